/** API of the monitor: a live NDJSON stream with filters, and the latest drops. */
import { StreamResponse, type Route } from './server.ts';
import type { EndpointManager } from '../endpoints.ts';
import type { Monitor } from '../monitor.ts';
import type { FlowNaming } from '../flows/record.ts';
import type { PolicyState } from '../policy-sync/state.ts';
import type { Datastore } from '../datastore/datastore.ts';

/** What the monitor routes act on. */
export interface MonitorContext {
  monitor: Monitor;
}

/**
 * Names pods (and their labels) from the local endpoints and the datastore,
 * and this node's pod devices; rebuilt when the policy state changes, so a
 * lookup is a map read.
 */
export function makeResolver(endpoints: Pick<EndpointManager, 'list'>, policy: Pick<PolicyState, 'revision' | 'hostAddresses'>, datastore: Pick<Datastore, 'objects'>): FlowNaming {
  let revision = -1;
  // Each pod's answer is made once per revision, its "ns/name" included: events name the same pods over and over.
  let byIp = new Map<string, { namespace: string; pod: string; name: string }>();
  let byEndpoint = new Map<number, { namespace: string; pod: string; name: string }>();
  let labels = new Map<string, Map<string, Record<string, string>>>();
  let devices = new Map<number, string>();
  const refresh = () => {
    if (revision === policy.revision) return;
    revision = policy.revision;
    byIp = new Map();
    byEndpoint = new Map();
    labels = new Map();
    devices = new Map();
    for (const p of datastore.objects().pods) {
      const status = (p.status ?? {}) as { podIPs?: { ip: string }[] };
      const namespace = p.metadata.namespace ?? 'default';
      const who = { namespace, pod: p.metadata.name, name: `${namespace}/${p.metadata.name}` };
      for (const { ip } of status.podIPs ?? []) byIp.set(ip, who);
      let ofNamespace = labels.get(namespace);
      if (!ofNamespace) labels.set(namespace, (ofNamespace = new Map()));
      ofNamespace.set(who.pod, p.metadata.labels ?? {});
    }
    for (const e of endpoints.list()) {
      const who = { namespace: e.namespace, pod: e.pod, name: `${e.namespace}/${e.pod}` };
      byEndpoint.set(e.id, who);
      for (const ip of e.ips) byIp.set(ip, who);
      devices.set(e.hostIfindex, e.hostIfname);
    }
  };
  return {
    podOfIp: (ip) => (refresh(), byIp.get(ip)),
    podOfEndpoint: (id) => (refresh(), byEndpoint.get(id)),
    hostAddresses: () => policy.hostAddresses(),
    labelsOf: (namespace, pod) => (refresh(), labels.get(namespace)?.get(pod)),
    interfaceName: (ifindex) => (refresh(), devices.get(ifindex)),
  };
}

/** The monitor routes. */
export function monitorRoutes(ctx: MonitorContext): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/v1/monitor',
      handler: ({ query }) => {
        const filter = {
          namespace: query.get('namespace') ?? undefined,
          pod: query.get('pod') ?? undefined,
          verdict: query.get('verdict') ?? undefined,
          type: query.get('type') ?? undefined,
        };
        return new StreamResponse((writeLine) => ctx.monitor.subscribe(filter, writeLine));
      },
    },
    { method: 'GET', pattern: '/v1/monitor/drops', handler: () => ctx.monitor.recentDrops() },
  ];
}

/** API of the monitor: a live NDJSON stream with filters, and the latest drops. */
import { StreamResponse, type Route } from './server.ts';
import type { EndpointManager } from '../endpoints.ts';
import type { Monitor, Resolver } from '../monitor.ts';
import type { PolicyState } from '../policy-sync/state.ts';
import type { Datastore } from '../datastore/datastore.ts';

/** What the monitor routes act on. */
export interface MonitorContext {
  monitor: Monitor;
}

/** Names pods from the local endpoints and the datastore; rebuilt when the policy state changes. */
export function makeResolver(endpoints: Pick<EndpointManager, 'list'>, policy: Pick<PolicyState, 'revision' | 'hostAddresses'>, datastore: Pick<Datastore, 'objects'>): Resolver {
  let revision = -1;
  let byIp = new Map<string, { namespace: string; pod: string }>();
  let byEndpoint = new Map<number, { namespace: string; pod: string }>();
  const refresh = () => {
    if (revision === policy.revision) return;
    revision = policy.revision;
    byIp = new Map();
    byEndpoint = new Map();
    for (const p of datastore.objects().pods) {
      const status = (p.status ?? {}) as { podIPs?: { ip: string }[] };
      for (const { ip } of status.podIPs ?? []) byIp.set(ip, { namespace: p.metadata.namespace ?? 'default', pod: p.metadata.name });
    }
    for (const e of endpoints.list()) {
      const who = { namespace: e.namespace, pod: e.pod };
      byEndpoint.set(e.id, who);
      for (const ip of e.ips) byIp.set(ip, who);
    }
  };
  return {
    podOfIp: (ip) => (refresh(), byIp.get(ip)),
    podOfEndpoint: (id) => (refresh(), byEndpoint.get(id)),
    hostAddresses: () => policy.hostAddresses(),
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

/**
 * API routes of the policy side: sync on demand (what `sluice local apply`
 * waits for), identities, and one pod's computed policy in readable form.
 */
import { COUNTER_NAMES, Counter, Identity, decodeCounterValue, encodeEpCounterKey } from '../../datapath/abi.ts';
import type { BpfMap } from '../../datapath/bpf-map.ts';
import type { CompiledEndpoint, CompiledState } from '../../policy/compile.ts';
import { RESERVED_IDENTITIES } from '../../lib/identity-numbers.ts';
import { PROTOCOL_ANY, protocolName } from '../../lib/protocols.ts';
import { ApiFailure, type Route } from './server.ts';
import type { EndpointManager } from '../endpoints.ts';
import type { PolicyState } from '../policy-sync/state.ts';

/** What the policy routes act on. */
export interface PolicyRoutesContext {
  endpoints: EndpointManager;
  policy: PolicyState;
  datapath: { maps: { ep_counters: BpfMap } };
}

const RESERVED: Record<number, string> = {
  [Identity.ANY]: 'any peer',
  ...Object.fromEntries(RESERVED_IDENTITIES.map((r) => [r.identity, `reserved:${r.name}`])),
};

function labelText(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).sort().join(',');
}

function peerText(state: CompiledState, peer: number): string {
  if (RESERVED[peer]) return RESERVED[peer]!;
  if (peer >= Identity.FIRST_CIDR_SELECTOR) return `addresses:${peer}`;
  const id = state.identities.get(peer);
  return id ? `${id.namespace}/{${labelText(id.podLabels)}}` : `identity:${peer}`;
}

function portText(protocol: number, port: number, prefixLength: number): string {
  if (protocol === PROTOCOL_ANY) return 'any';
  const name = protocolName(protocol);
  if (prefixLength === 0) return `${name}/*`;
  const last = port + 2 ** (16 - prefixLength) - 1;
  return last === port ? `${name}/${port}` : `${name}/${port}-${last}`;
}

/** A compiled port spec ('*', '6:*', '6:80-80') as people read it ('*', 'TCP/*', 'TCP/80-80'). */
function portSpecText(spec: string): string {
  return spec.replace(/^(\d+):/, (_, protocol: string) => `${protocolName(Number(protocol))}/`);
}

/** One endpoint's compiled policy as people read it. */
export function readablePolicy(state: CompiledState, c: CompiledEndpoint) {
  return {
    identity: c.identity,
    ingressIsolated: c.ingressIsolated,
    egressIsolated: c.egressIsolated,
    policies: c.policies,
    allow: c.entries
      .filter((e) => e.peer < Identity.FIRST_CIDR_SELECTOR)
      .map((e) => ({ direction: e.direction, peer: peerText(state, e.peer), peerId: e.peer, port: portText(e.protocol, e.port, e.portPrefixLength) })),
    allowAddresses: c.cidrEntries.map((a) => ({
      direction: a.direction,
      prefix: `${a.address}/${a.prefixLength}`,
      ports: (state.selectors.get(a.selector) ?? []).map(portSpecText),
    })),
  };
}

function endpointCounters(map: BpfMap, endpointId: number): Record<string, { packets: number; bytes: number }> {
  const out: Record<string, { packets: number; bytes: number }> = {};
  for (const name of COUNTER_NAMES) {
    const perCpu = map.lookupPerCpu(encodeEpCounterKey(endpointId, Counter[name]));
    if (perCpu.length === 0) continue;
    let packets = 0n;
    let bytes = 0n;
    for (const v of perCpu) {
      const c = decodeCounterValue(v);
      packets += c.packets;
      bytes += c.bytes;
    }
    if (packets > 0n) out[name] = { packets: Number(packets), bytes: Number(bytes) };
  }
  return out;
}

/** The policy routes. */
export function policyRoutes(ctx: PolicyRoutesContext): Route[] {
  return [
    {
      method: 'POST',
      pattern: '/v1/datastore/sync',
      handler: () => {
        const stats = ctx.policy.apply(ctx.endpoints.list());
        return { revision: ctx.policy.revision, ...stats };
      },
    },
    {
      method: 'GET',
      pattern: '/v1/identities',
      handler: () => {
        const state = ctx.policy.sync.state();
        const reserved = Object.entries(RESERVED)
          .filter(([id]) => Number(id) !== Identity.ANY)
          .map(([id, name]) => ({ identity: Number(id), reserved: name }));
        const ids = [...(state?.identities ?? new Map()).entries()].map(([identity, l]) => ({
          identity,
          namespace: l.namespace,
          labels: l.podLabels,
          namespaceLabels: l.namespaceLabels,
        }));
        return [...reserved, ...ids.sort((a, b) => a.identity - b.identity)];
      },
    },
    {
      method: 'GET',
      pattern: '/v1/policy/:namespace/:pod',
      handler: ({ params }) => {
        const [namespace, pod] = params as [string, string];
        const state = ctx.policy.sync.state();
        const eps = ctx.endpoints.list().filter((e) => e.namespace === namespace && e.pod === pod);
        if (!state || eps.length === 0) throw new ApiFailure(404, 'NotFound', `no endpoint of pod ${namespace}/${pod} on this node`);
        const errors = new Map(ctx.policy.policyErrors.map((e) => [`${e.namespace}/${e.name}`, e.problems]));
        return eps.map((ep) => {
          const c = state.endpoints.find((x) => x.endpointId === ep.id)!;
          // The policies applied whose objects could not be compiled as written (their unreadable parts allow nothing).
          const notCompiled = c.policies.filter((p) => errors.has(p)).map((p) => ({ policy: p, problems: errors.get(p)! }));
          return { endpoint: ep.id, ifname: ep.ifname, ips: ep.ips, ...readablePolicy(state, c), notCompiled, counters: endpointCounters(ctx.datapath.maps.ep_counters, ep.id) };
        });
      },
    },
  ];
}

/**
 * The datapath's policy decision, emulated over compiled state exactly as
 * bpf/datapath.c looks it up (identity, any peer, address selector; LPM on
 * ports and prefixes), so compiler tests state behaviour, not entries.
 */
import { Identity, PROTO_ANY } from '../../datapath/abi.ts';
import { cidrContains, parseCidr } from '../../lib/cidr.ts';
import type { CompiledEndpoint, CompiledState, PolicyDirection } from '../../policy/compile.ts';

function identityOf(state: CompiledState, ip: string): number {
  return state.ipcache.find((e) => e.address === ip)?.identity ?? Identity.WORLD;
}

function portMatches(entryPort: number, prefixLength: number, port: number): boolean {
  const shift = 16 - prefixLength;
  return prefixLength === 0 || entryPort >> shift === port >> shift;
}

function peerAllowed(ep: CompiledEndpoint, direction: PolicyDirection, peer: number, protocol: number, port: number): boolean {
  return ep.entries.some(
    (e) =>
      e.direction === direction &&
      e.peer === peer &&
      ((e.protocol === protocol && portMatches(e.port, e.portPrefixLength, port)) || (e.protocol === PROTO_ANY && e.portPrefixLength === 0)),
  );
}

/** policy_allows() of bpf/datapath.c. */
export function policyAllows(ep: CompiledEndpoint, direction: PolicyDirection, peerIp: string, peerIdentity: number, protocol: number, port: number): boolean {
  if (peerAllowed(ep, direction, peerIdentity, protocol, port) || peerAllowed(ep, direction, Identity.ANY, protocol, port)) return true;
  let best: (typeof ep.cidrEntries)[number] | undefined;
  for (const c of ep.cidrEntries) {
    if (c.direction === direction && cidrContains(parseCidr(`${c.address}/${c.prefixLength}`), peerIp) && (!best || c.prefixLength > best.prefixLength)) best = c;
  }
  return best !== undefined && peerAllowed(ep, direction, best.selector, protocol, port);
}

/** Would a new flow from srcIp to dstIp pass both ends, given which endpoints are local? */
export function flowAllowed(
  state: CompiledState,
  endpointsByIp: Map<string, number>,
  srcIp: string,
  dstIp: string,
  protocol: number,
  port: number,
): boolean {
  const byId = new Map(state.endpoints.map((e) => [e.endpointId, e]));
  const src = byId.get(endpointsByIp.get(srcIp) ?? -1);
  const dst = byId.get(endpointsByIp.get(dstIp) ?? -1);
  if (src?.egressIsolated && !policyAllows(src, 'egress', dstIp, identityOf(state, dstIp), protocol, port)) return false;
  if (dst?.ingressIsolated && !policyAllows(dst, 'ingress', srcIp, identityOf(state, srcIp), protocol, port)) return false;
  return true;
}

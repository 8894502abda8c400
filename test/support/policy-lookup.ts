/**
 * The datapath's policy decision over compiled state (policy_allows() is
 * policy/lookup.ts, which explain uses too), so compiler tests state
 * behaviour, not entries.
 */
import { Identity } from '../../datapath/abi.ts';
import type { CompiledState } from '../../policy/compile.ts';
import { policyAllows } from '../../policy/lookup.ts';

function identityOf(state: CompiledState, ip: string): number {
  return state.ipcache.find((e) => e.address === ip)?.identity ?? Identity.WORLD;
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

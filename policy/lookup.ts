/**
 * The datapath's policy decision over compiled entries, as policy_allows()
 * of bpf/policy.h looks it up: the peer's identity, then any peer, then the
 * address selector of the longest cidr_policy prefix holding the peer's
 * address; each with the flow's protocol and port (LPM on the port), or with
 * the any-protocol entry of a rule without ports. Pure.
 *
 * policy/explain.ts judges flows with it, and the compiler's tests
 * (test/support/policy-lookup.ts) state behaviour through it.
 */
import { cidrContains, parseCidr } from '../lib/cidr.ts';
import { Identity } from '../lib/identity-numbers.ts';
import { PROTOCOL_ANY } from '../lib/protocols.ts';
import type { CompiledRules, PolicyDirection } from './compile.ts';

const PORT_BITS = 16;

function portMatches(entryPort: number, prefixLength: number, port: number): boolean {
  const shift = PORT_BITS - prefixLength;
  return prefixLength === 0 || entryPort >> shift === port >> shift;
}

/** peer_allowed(): does one peer (identity or selector) have an entry for this protocol and port? */
function peerAllowed(rules: CompiledRules, direction: PolicyDirection, peer: number, protocol: number, port: number): boolean {
  return rules.entries.some(
    (e) =>
      e.direction === direction &&
      e.peer === peer &&
      ((e.protocol === protocol && portMatches(e.port, e.portPrefixLength, port)) || (e.protocol === PROTOCOL_ANY && e.portPrefixLength === 0)),
  );
}

/**
 * policy_allows(): may an endpoint with these rules open (egress) or accept
 * (ingress) a new flow with a peer of this identity at this address? The
 * caller decides whether the direction is isolated at all.
 */
export function policyAllows(rules: CompiledRules, direction: PolicyDirection, peerIp: string, peerIdentity: number, protocol: number, port: number): boolean {
  if (peerAllowed(rules, direction, peerIdentity, protocol, port) || peerAllowed(rules, direction, Identity.ANY, protocol, port)) return true;
  let best: CompiledRules['cidrEntries'][number] | undefined;
  for (const c of rules.cidrEntries) {
    if (c.direction === direction && cidrContains(parseCidr(`${c.address}/${c.prefixLength}`), peerIp) && (!best || c.prefixLength > best.prefixLength)) best = c;
  }
  return best !== undefined && peerAllowed(rules, direction, best.selector, protocol, port);
}

/**
 * The reference evaluator: NetworkPolicy v1 semantics written from the
 * Kubernetes API reference and the concepts page, deliberately sharing no code
 * with Sluice's policy/ compiler. Given the cluster state and one connection
 * (source pod, destination pod, protocol, port) it says whether the spec
 * allows it. Pure.
 *
 * The spec, as applied here:
 * - A policy selects the pods of its own namespace that its podSelector
 *   matches. policyTypes says which directions it isolates; when omitted it is
 *   Ingress, plus Egress when the policy has at least one egress rule.
 * - A pod is isolated for ingress (egress) when any policy selecting it has
 *   Ingress (Egress) in its policyTypes. A non-isolated direction allows all.
 * - An isolated direction allows exactly the union of the rules of that
 *   direction of every policy that selects the pod and isolates it in that
 *   direction (rules of a policy without that type are ignored).
 * - A rule allows a connection when its peers match (no peers: every peer) and
 *   its ports match (no ports: every port of every protocol).
 * - Peers: podSelector alone means pods of the policy's namespace;
 *   namespaceSelector alone means every pod of the matching namespaces; both
 *   means matching pods in matching namespaces; ipBlock means addresses in
 *   cidr and in none of except (pod addresses included).
 * - Ports: protocol defaults to TCP; no port means every port of the
 *   protocol; a number, optionally up to endPort inclusive; a name means the
 *   destination pod's container port of that name and protocol.
 * - A connection is allowed when the source's egress side and the
 *   destination's ingress side both allow it.
 */
import { cidrContains } from './ip-block.ts';
import { labelsMatch } from './label-selector.ts';
import type { ClusterState, ModelPod, Protocol } from './model.ts';
import type { NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort } from './types.ts';

/** One connection attempt. */
export interface Connection {
  from: ModelPod;
  to: ModelPod;
  protocol: Protocol;
  port: number;
}

type Direction = 'Ingress' | 'Egress';

/** The directions a policy isolates, with the defaulting of an omitted policyTypes. */
export function policyTypesOf(policy: NetworkPolicy): Direction[] {
  if (policy.spec.policyTypes !== undefined && policy.spec.policyTypes.length > 0) return policy.spec.policyTypes;
  return (policy.spec.egress ?? []).length > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
}

function selects(policy: NetworkPolicy, pod: ModelPod): boolean {
  return policy.metadata.namespace === pod.namespace && labelsMatch(policy.spec.podSelector, pod.labels);
}

function peerMatches(peer: NetworkPolicyPeer, policy: NetworkPolicy, other: ModelPod, state: ClusterState): boolean {
  if (peer.ipBlock) {
    return cidrContains(peer.ipBlock.cidr, other.ip) && !(peer.ipBlock.except ?? []).some((x) => cidrContains(x, other.ip));
  }
  if (peer.namespaceSelector) {
    const nsLabels = state.namespaces.get(other.namespace) ?? {};
    if (!labelsMatch(peer.namespaceSelector, nsLabels)) return false;
  } else if (other.namespace !== policy.metadata.namespace) {
    return false;
  }
  return labelsMatch(peer.podSelector ?? {}, other.labels);
}

function portMatches(rulePort: NetworkPolicyPort, conn: Connection): boolean {
  const protocol = (rulePort.protocol ?? 'TCP').toLowerCase();
  if (protocol !== conn.protocol) return false;
  if (rulePort.port === undefined) return true;
  if (typeof rulePort.port === 'number') {
    const last = rulePort.endPort ?? rulePort.port;
    return conn.port >= rulePort.port && conn.port <= last;
  }
  // A named port is resolved on the destination pod, with the rule's protocol.
  return conn.to.ports.some((p) => p.name === rulePort.port && p.protocol.toLowerCase() === protocol && p.containerPort === conn.port);
}

function ruleAllows(peers: NetworkPolicyPeer[] | undefined, ports: NetworkPolicyPort[] | undefined, policy: NetworkPolicy, other: ModelPod, conn: Connection, state: ClusterState): boolean {
  const peerOk = peers === undefined || peers.length === 0 || peers.some((p) => peerMatches(p, policy, other, state));
  const portOk = ports === undefined || ports.length === 0 || ports.some((p) => portMatches(p, conn));
  return peerOk && portOk;
}

/** Whether one side allows the connection: the source's egress or the destination's ingress. */
export function sideAllows(direction: Direction, conn: Connection, state: ClusterState): boolean {
  const self = direction === 'Ingress' ? conn.to : conn.from;
  const other = direction === 'Ingress' ? conn.from : conn.to;
  const isolating = state.policies.filter((p) => selects(p, self) && policyTypesOf(p).includes(direction));
  if (isolating.length === 0) return true;
  return isolating.some((policy) =>
    direction === 'Ingress'
      ? (policy.spec.ingress ?? []).some((r) => ruleAllows(r.from, r.ports, policy, other, conn, state))
      : (policy.spec.egress ?? []).some((r) => ruleAllows(r.to, r.ports, policy, other, conn, state)),
  );
}

/** True when NetworkPolicy allows the connection. */
export function allowed(conn: Connection, state: ClusterState): boolean {
  return sideAllows('Egress', conn, state) && sideAllows('Ingress', conn, state);
}

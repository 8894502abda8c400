/**
 * What each datapath counter (enum sluice_counter) means as a metric: the
 * family it belongs to and its reason/direction labels. Pure: the one table
 * that turns counter names into Prometheus series, for the global counters
 * and the per-endpoint ones alike.
 */
import type { CounterName } from '../../datapath/abi.ts';

/**
 * The metric family of a counter.
 * - seen: packets a program looked at (from-pod: leaving pods; to-pod: arriving from the stack)
 * - forward: from-pod handed the packet on (to a local pod, or to the stack)
 * - drop: the packet was dropped; reason (and direction, when the counter says it) labels why
 * - allowed: a policy check allowed a new flow
 * - established: a packet of a known (conntrack) flow
 * - related: an ICMP error about a known flow
 * - arp: ARP requests for the gateway answered
 * - events-lost: monitor events not emitted (rate limit or full ring buffer)
 * - service-nat: packets the per-packet Service translation rewrote (to a backend, back to the frontend) or refused
 */
export type CounterFamily = 'seen' | 'forward' | 'drop' | 'allowed' | 'established' | 'related' | 'arp' | 'events-lost' | 'service-nat';

/** A counter's family and labels; direction is absent when the counter does not tell. */
export interface CounterMeaning {
  family: CounterFamily;
  labels: { reason?: string; direction?: 'ingress' | 'egress'; path?: string; program?: string };
}

/**
 * Every counter's meaning. Directions are the pod's view: egress leaves a pod
 * (from-pod), ingress arrives at one. Malformed, fragment and unknown-endpoint
 * drops happen in both programs and the counters do not say which.
 */
export const COUNTER_MEANINGS: Record<CounterName, CounterMeaning> = {
  FROM_POD: { family: 'seen', labels: { program: 'from-pod', direction: 'egress' } },
  TO_POD: { family: 'seen', labels: { program: 'to-pod', direction: 'ingress' } },
  REDIRECT_LOCAL: { family: 'forward', labels: { direction: 'egress', path: 'local-pod' } },
  TO_STACK: { family: 'forward', labels: { direction: 'egress', path: 'stack' } },
  ARP_REPLY: { family: 'arp', labels: {} },
  DROP_SPOOF: { family: 'drop', labels: { reason: 'spoofing', direction: 'egress' } },
  DROP_UNKNOWN_EP: { family: 'drop', labels: { reason: 'unknown_endpoint' } },
  DROP_MALFORMED: { family: 'drop', labels: { reason: 'malformed' } },
  DROP_POLICY_INGRESS: { family: 'drop', labels: { reason: 'policy', direction: 'ingress' } },
  DROP_POLICY_EGRESS: { family: 'drop', labels: { reason: 'policy', direction: 'egress' } },
  DROP_FRAGMENT: { family: 'drop', labels: { reason: 'fragment' } },
  POLICY_ALLOWED: { family: 'allowed', labels: {} },
  CT_ESTABLISHED: { family: 'established', labels: {} },
  CT_RELATED: { family: 'related', labels: {} },
  DROP_ICMP_UNRELATED: { family: 'drop', labels: { reason: 'icmp_unrelated' } },
  DROP_TUNNEL: { family: 'drop', labels: { reason: 'tunnel', direction: 'egress' } },
  DROP_CT_FULL: { family: 'drop', labels: { reason: 'conntrack_full' } },
  DROP_FRAG_FULL: { family: 'drop', labels: { reason: 'fragments_full' } },
  DROP_REVOKED: { family: 'drop', labels: { reason: 'revoked' } },
  EVENTS_LOST: { family: 'events-lost', labels: {} },
  SERVICE_DNAT: { family: 'service-nat', labels: { direction: 'egress', path: 'backend' } },
  SERVICE_REVNAT: { family: 'service-nat', labels: { direction: 'ingress', path: 'frontend' } },
  SERVICE_REFUSED: { family: 'service-nat', labels: { direction: 'egress', path: 'refused' } },
};

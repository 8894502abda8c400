/**
 * Which allocations belong to containers that no longer exist. A pure
 * decision over facts the caller gathers (allocations, endpoint records, which
 * netns paths exist, which pods the datastore knows); the agent's runner
 * (agent/reclaim/ipam-reconcile.ts) does the releasing. No I/O here.
 *
 * An attachment (container ID + ifname, holding one address per family) is
 * released when it is older than the grace period and:
 * - the caller gave the runtime's list of valid attachments (CNI GC) and it
 *   is not in it; otherwise
 * - its netns (from its endpoint record, else from the allocation) is known
 *   and gone, and the datastore does not show its pod running on this node; or
 * - it has no endpoint, no known netns, and no pod in the datastore (the
 *   datastore criterion is skipped when there is no datastore).
 * An endpoint whose netns still exists keeps its addresses even when its pod
 * is gone: the runtime still owes it a DEL. A pod the datastore shows running
 * on this node keeps them whatever its netns looks like from the agent (a
 * path the agent's container cannot see is "unknown", never "gone"), unless
 * the attachment is superseded: another attachment of the same pod and
 * ifname is registered in a netns that exists, and this one's netns is gone
 * or is that same netns without an endpoint of its own (the pod's sandbox
 * was made again after an ADD whose rollback could not release its addresses).
 */
import type { AllocationRecord } from './store.ts';
import { elapsedMs, type BootTime } from '../lib/boot-clock.ts';

/** What the decision needs to know about an endpoint. */
export interface EndpointFacts {
  containerID: string;
  ifname: string;
  /** Netns path, '' when unknown. */
  netns: string;
}

/** Input of decideReleases. */
export interface ReconcileInput {
  allocations: AllocationRecord[];
  endpoints: EndpointFacts[];
  /** Whether the netns path exists now, as far as the agent can tell (see netnsState in agent/reclaim/ipam-reconcile.ts). */
  netnsState: (netns: string) => NetnsState;
  /** True when the datastore shows the pod running on this node; undefined without a datastore. */
  podRunning?: ((namespace: string, name: string) => boolean) | undefined;
  /** True when the datastore has the pod; undefined when there is no datastore yet (criterion skipped). */
  podExists?: ((namespace: string, name: string) => boolean) | undefined;
  /** The runtime's valid attachments (CNI GC); when given, everything else past the grace period goes. */
  validAttachments?: { containerID: string; ifname: string }[] | undefined;
  /** Attachments younger than this on the boot-time clock are never released: an ADD may still be running. */
  graceMs: number;
  /** Now on the boot-time clock (lib/boot-clock.ts), never the wall clock: a clock step must not age or rejuvenate anything. */
  now: BootTime;
}

/** What the agent can tell of a netns path: there, gone, or out of its sight. */
export type NetnsState = 'exists' | 'gone' | 'unknown';

/** Why an attachment is released or kept. */
export type ReconcileReason =
  | 'within-grace'
  | 'valid-attachment'
  | 'not-in-valid-attachments'
  | 'netns-exists'
  | 'netns-gone'
  | 'endpoint-exists'
  | 'pod-exists'
  | 'pod-running'
  | 'superseded'
  | 'pod-gone'
  | 'no-endpoint';

/** The decision for one attachment. */
export interface AttachmentDecision {
  containerID: string;
  ifname: string;
  namespace: string;
  pod: string;
  ips: string[];
  /** True when an endpoint record exists: the runner removes it with the addresses. */
  hasEndpoint: boolean;
  reason: ReconcileReason;
}

/** Output of decideReleases. */
export interface ReconcileDecision {
  release: AttachmentDecision[];
  keep: AttachmentDecision[];
}

/** Splits the allocations' attachments into those to release and those to keep, with the reason for each. */
export function decideReleases(input: ReconcileInput): ReconcileDecision {
  const attachKey = (containerID: string, ifname: string): string => `${containerID}\u0000${ifname}`;
  const endpoints = new Map(input.endpoints.map((e) => [attachKey(e.containerID, e.ifname), e]));
  const valid = input.validAttachments ? new Set(input.validAttachments.map((a) => attachKey(a.containerID, a.ifname))) : undefined;
  const byAttachment = new Map<string, AllocationRecord[]>();
  for (const a of input.allocations) {
    const k = attachKey(a.containerID, a.ifname);
    byAttachment.set(k, [...(byAttachment.get(k) ?? []), a]);
  }

  const netnsOf = (k: string, allocs: AllocationRecord[]): string => endpoints.get(k)?.netns || allocs.find((a) => a.netns !== '')?.netns || '';
  const stateOf = new Map<string, NetnsState>();
  for (const [k, allocs] of byAttachment) {
    const netns = netnsOf(k, allocs);
    stateOf.set(k, netns === '' ? 'unknown' : input.netnsState(netns));
  }
  // Pod and ifname → the netns of its attachments that have an endpoint in a netns that exists.
  const podIfKey = (a: AllocationRecord): string => `${a.namespace}/${a.pod}\u0000${a.ifname}`;
  const liveOfPod = new Map<string, { key: string; netns: string }[]>();
  for (const [k, allocs] of byAttachment) {
    if (stateOf.get(k) !== 'exists' || !endpoints.has(k) || allocs[0]!.pod === '') continue;
    const pk = podIfKey(allocs[0]!);
    liveOfPod.set(pk, [...(liveOfPod.get(pk) ?? []), { key: k, netns: netnsOf(k, allocs) }]);
  }
  /**
   * Superseded: another attachment of the same pod and ifname is registered in
   * a netns that exists, and this one's netns is gone, or it has no endpoint
   * and names that same netns (one ifname in one netns has one owner).
   */
  const superseded = (k: string, allocs: AllocationRecord[], state: NetnsState): boolean => {
    const netns = netnsOf(k, allocs);
    return (liveOfPod.get(podIfKey(allocs[0]!)) ?? []).some(
      (live) => live.key !== k && (state === 'gone' || (state === 'exists' && !endpoints.has(k) && live.netns === netns)),
    );
  };

  const out: ReconcileDecision = { release: [], keep: [] };
  for (const [k, allocs] of byAttachment) {
    const first = allocs[0]!;
    const endpoint = endpoints.get(k);
    // Its youngest address counts; one made in an earlier boot is older than any grace period.
    const age = Math.min(...allocs.map((a) => elapsedMs(a.createdBoot, input.now)));
    const decide = (release: boolean, reason: ReconcileReason): void => {
      const d: AttachmentDecision = {
        containerID: first.containerID,
        ifname: first.ifname,
        namespace: first.namespace,
        pod: first.pod,
        ips: allocs.map((a) => a.ip),
        hasEndpoint: endpoint !== undefined,
        reason,
      };
      (release ? out.release : out.keep).push(d);
    };
    if (age < input.graceMs) {
      decide(false, 'within-grace');
      continue;
    }
    if (valid) {
      if (valid.has(k)) decide(false, 'valid-attachment');
      else decide(true, 'not-in-valid-attachments');
      continue;
    }
    const state = stateOf.get(k)!;
    if (superseded(k, allocs, state)) {
      decide(true, 'superseded');
      continue;
    }
    if (state === 'exists') {
      decide(false, 'netns-exists');
      continue;
    }
    if (input.podRunning?.(first.namespace, first.pod)) {
      decide(false, 'pod-running');
      continue;
    }
    if (state === 'gone') {
      decide(true, 'netns-gone');
      continue;
    }
    if (endpoint) {
      // An endpoint whose netns cannot be checked: keep it until its DEL or a GC.
      decide(false, 'endpoint-exists');
      continue;
    }
    if (input.podExists === undefined) decide(true, 'no-endpoint');
    else if (input.podExists(first.namespace, first.pod)) decide(false, 'pod-exists');
    else decide(true, 'pod-gone');
  }
  return out;
}

/**
 * Which allocations to put back after the IPAM store was lost or damaged: a
 * pure decision over what the node shows in use, gathered by the agent
 * (agent/ipam-recovery.ts). No I/O here.
 *
 * Every address a pod may be using is held again, so none is handed out
 * twice. The sources, most exact first:
 * - the agent's endpoint records: the attachment (container ID, ifname), pod and netns;
 * - the host veths this agent made: their alias names the attachment, their
 *   routes the addresses;
 * - the pinned endpoint map: addresses the datapath delivers to a host veth;
 * - the pods the datastore shows running on this node, with their addresses.
 * An address known only from the map or the datastore is held under a
 * placeholder attachment ("recovered:..."): its real container's DEL cannot
 * release it, reconciliation does once its pod or veth is gone.
 */
import type { RestoredAllocation } from './allocator.ts';

/** Prefix of the placeholder container ID of an address whose attachment is unknown. */
export const RECOVERED_PREFIX = 'recovered:';

/** What the node shows in use. */
export interface NodeFacts {
  endpoints: { containerID: string; ifname: string; namespace: string; pod: string; netns: string; ips: string[] }[];
  /** Host veths of this agent: the attachment from their alias, the addresses routed to them. */
  veths: { name: string; containerID: string; ifname: string; ips: string[] }[];
  /** Entries of the pinned endpoint map; hostVeth is the name of the veth it delivers to, null when no such link exists. */
  endpointMap: { ip: string; hostVeth: string | null }[];
  /** Pods the datastore shows running on this node. */
  pods: { namespace: string; name: string; ips: string[] }[];
}

/** An allocation to put back, with the sources that show it. */
export interface PlannedAllocation extends RestoredAllocation {
  sources: string[];
}

/** The plan: what to put back, and what could not be placed, with why. */
export interface RebuildPlan {
  allocations: PlannedAllocation[];
  unplaced: { ip: string; why: string }[];
}

/**
 * The allocations the facts show. `inPools` says whether the pools contain
 * an address: one outside them is never handed out, so it needs no holding.
 * `vethNetns` is the path whose existence says the veth (and so the pod) is
 * still there: reconciliation checks it like a netns (see agent/ipam-recovery.ts).
 */
export function planRebuild(facts: NodeFacts, inPools: (ip: string) => boolean, vethNetns: (veth: string) => string): RebuildPlan {
  const byIp = new Map<string, PlannedAllocation>();
  const unplaced: { ip: string; why: string }[] = [];
  const podOf = new Map<string, { namespace: string; name: string }>();
  for (const p of facts.pods) for (const ip of p.ips) podOf.set(ip, p);
  const attachment = (a: { containerID: string; ifname: string }): string => `${a.containerID}/${a.ifname}`;

  const claim = (ip: string, holder: Omit<RestoredAllocation, 'ip'>, source: string): void => {
    if (!inPools(ip)) {
      unplaced.push({ ip, why: `${source} ${attachment(holder)}: outside the pod CIDRs, never handed out` });
      return;
    }
    const have = byIp.get(ip);
    if (!have) {
      byIp.set(ip, { ip, ...holder, sources: [source] });
      return;
    }
    if (!have.sources.includes(source)) have.sources.push(source);
    // A placeholder gives way to a real attachment; two real ones disagreeing keep the first (the more exact source).
    if (have.containerID.startsWith(RECOVERED_PREFIX) && !holder.containerID.startsWith(RECOVERED_PREFIX)) {
      Object.assign(have, holder, { namespace: holder.namespace || have.namespace, pod: holder.pod || have.pod });
    } else if (!holder.containerID.startsWith(RECOVERED_PREFIX) && attachment(have) !== attachment(holder)) {
      unplaced.push({ ip, why: `${source} names ${attachment(holder)}, but ${attachment(have)} holds it` });
    }
  };
  const podFields = (ip: string, namespace = '', pod = ''): { namespace: string; pod: string } => {
    const p = podOf.get(ip);
    return { namespace: namespace || p?.namespace || '', pod: pod || p?.name || '' };
  };

  for (const e of facts.endpoints) {
    for (const ip of e.ips) claim(ip, { containerID: e.containerID, ifname: e.ifname, namespace: e.namespace, pod: e.pod, netns: e.netns }, 'endpoint record');
  }
  for (const v of facts.veths) {
    for (const ip of v.ips) claim(ip, { containerID: v.containerID, ifname: v.ifname, ...podFields(ip), netns: vethNetns(v.name) }, `veth ${v.name}`);
  }
  for (const m of facts.endpointMap) {
    claim(m.ip, { containerID: `${RECOVERED_PREFIX}${m.ip}`, ifname: 'eth0', ...podFields(m.ip), netns: m.hostVeth ? vethNetns(m.hostVeth) : '' }, 'endpoint map');
  }
  for (const p of facts.pods) {
    for (const ip of p.ips) {
      // A running pod's address outside the pools is another network's (or an old CIDR's): nothing here hands it out.
      if (!inPools(ip)) continue;
      claim(ip, { containerID: `${RECOVERED_PREFIX}${p.namespace}/${p.name}`, ifname: 'eth0', namespace: p.namespace, pod: p.name, netns: '' }, 'running pod');
    }
  }
  return { allocations: [...byIp.values()], unplaced };
}

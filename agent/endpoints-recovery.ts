/**
 * The endpoint records after endpoints.db was lost or damaged (moved aside by
 * agent/store-check.ts): rebuilt from what the node still holds, before the
 * first sync, which would otherwise delete every endpoint the records lack
 * from the maps and cut the running pods off.
 *
 * The pinned endpoint map is the truth of what the datapath serves: each
 * endpoint's id (its policy slots, its conntrack entries and counters are
 * keyed by it, so it is kept), host veth, MACs and addresses. The veth's
 * alias names the CNI attachment (container ID, ifname); the IPAM store
 * (or, failing it, the datastore) names the pod and its netns. Endpoint ids
 * handed out from now on start above every id a map still names.
 */
import type { Endpoint, EndpointSpec } from '../contract/api-types.ts';
import type { AllocationRecord } from '../ipam/store.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Datastore } from './datastore/datastore.ts';
import type { RestoredEndpoint } from './endpoints.ts';
import type { KernelNumbers, MappedEndpoint } from './kernel-numbers.ts';
import { hostVeths, vethLivenessPath } from './ipam-recovery.ts';

/** The cause of a rebuild of a store that did not exist. */
export const MISSING = 'the store was missing';

/** A host veth as the rebuild sees it: its index, name and, when this agent made it, the attachment its alias names. */
export interface VethFact {
  index: number;
  name: string;
  attachment: { containerID: string; ifname: string } | null;
}

/** What the records are rebuilt from. */
export interface EndpointFacts {
  mapped: MappedEndpoint[];
  veths: VethFact[];
  allocations: Pick<AllocationRecord, 'ip' | 'containerID' | 'ifname' | 'namespace' | 'pod' | 'netns' | 'createdAt'>[];
  pods: { namespace: string; name: string; ips: string[] }[];
}

/** The records to put back, and the endpoints of the map that could not be placed, with why. */
export interface EndpointPlan {
  records: RestoredEndpoint[];
  unplaced: string[];
}

/** Decides the records (pure). now: the created time of a record whose allocation is unknown. */
export function planEndpoints(facts: EndpointFacts, now: number): EndpointPlan {
  const vethAt = new Map(facts.veths.map((v) => [v.index, v]));
  const allocationOf = new Map(facts.allocations.map((a) => [a.ip, a]));
  const podOf = new Map<string, { namespace: string; name: string }>();
  for (const p of facts.pods) for (const ip of p.ips) podOf.set(ip, p);
  const records: RestoredEndpoint[] = [];
  const unplaced: string[] = [];
  for (const ep of [...facts.mapped].sort((a, b) => a.endpointId - b.endpointId)) {
    const what = `endpoint ${ep.endpointId} (${ep.ips.join(', ')})`;
    const veth = vethAt.get(ep.ifindex);
    if (!veth) {
      unplaced.push(`${what}: its host veth (ifindex ${ep.ifindex}) is gone, so is its pod; the first sync removes it from the maps`);
      continue;
    }
    const allocated = ep.ips.map((ip) => allocationOf.get(ip)).filter((a) => a !== undefined);
    const attachment = veth.attachment ?? (allocated[0] ? { containerID: allocated[0].containerID, ifname: allocated[0].ifname } : null);
    if (!attachment) {
      unplaced.push(`${what}: neither its veth ${veth.name} nor the IPAM store names its container; the first sync removes it from the maps`);
      continue;
    }
    const allocation = allocated.find((a) => a.containerID === attachment.containerID && a.ifname === attachment.ifname);
    const pod = ep.ips.map((ip) => podOf.get(ip)).find((p) => p !== undefined);
    const spec: EndpointSpec = {
      containerID: attachment.containerID,
      ifname: attachment.ifname,
      namespace: allocation?.namespace || pod?.namespace || '',
      pod: allocation?.pod || pod?.name || '',
      // Unknown netns: the veth's path says whether the pod is still there (as the IPAM rebuild does).
      netns: allocation?.netns || vethLivenessPath(veth.name),
      hostIfname: veth.name,
      hostIfindex: ep.ifindex,
      mac: ep.mac,
      hostMac: ep.hostMac,
      // IPv4 first, as ADD allocates them.
      ips: [...ep.ips].sort((a, b) => Number(a.includes(':')) - Number(b.includes(':'))),
    };
    records.push({ id: ep.endpointId, spec, createdAt: allocation?.createdAt ?? now });
  }
  return { records, unplaced };
}

/** What restoring the records reads and writes. */
export interface EndpointRecoveryDeps {
  endpoints: { restore(records: RestoredEndpoint[], idFloor: number): void; list(): Endpoint[] };
  kernel: KernelNumbers;
  ipam: { list(): AllocationRecord[] };
  datastore: Pick<Datastore, 'objects' | 'refresh'>;
  /** The agent's socket: its host veths carry the mark made from it. */
  socket: string;
  /** Why the store is rebuilt, for the log ('the damaged store moved aside to ...'). */
  cause: string;
  log: (msg: string) => void;
}

/** Puts back the endpoint records the node shows; returns the plan it applied. */
export async function restoreEndpoints(deps: EndpointRecoveryDeps): Promise<EndpointPlan> {
  const veths = await hostVeths(deps.socket);
  const pods: EndpointFacts['pods'] = [];
  try {
    deps.datastore.refresh();
    for (const p of deps.datastore.objects().pods) {
      const s = (p.status ?? {}) as { podIPs?: { ip: string }[]; podIP?: string };
      pods.push({ namespace: p.metadata.namespace ?? '', name: p.metadata.name, ips: s.podIPs?.map((x) => x.ip) ?? (s.podIP ? [s.podIP] : []) });
    }
  } catch (err: unknown) {
    // Only names are lost: the IPAM store names the pods too.
    deps.log(`endpoint rebuild: the datastore could not be read (${errorMessage(err)}); pods are named from the IPAM store only`);
  }
  const plan = planEndpoints(
    { mapped: [...deps.kernel.endpoints.values()], veths: veths.links, allocations: deps.ipam.list(), pods },
    Date.now(),
  );
  deps.endpoints.restore(plan.records, deps.kernel.maxEndpointId);
  // A first start (no store, no endpoint in the maps) has nothing to say.
  if (deps.cause === MISSING && deps.kernel.endpoints.size === 0) return plan;
  const from = deps.cause;
  const line = (r: RestoredEndpoint): string => `${r.id} ${r.spec.namespace || '?'}/${r.spec.pod || '?'} ${r.spec.ips.join(',')} (${r.spec.hostIfname})`;
  deps.log(`endpoints rebuilt (${from}): ${plan.records.length} endpoint(s) put back from the pinned endpoint map: ${plan.records.map(line).join('; ') || 'none'}; new endpoint ids start above ${deps.kernel.maxEndpointId}`);
  if (plan.unplaced.length > 0) deps.log(`endpoints: could not put back ${plan.unplaced.length}: ${plan.unplaced.join('; ')}`);
  return plan;
}

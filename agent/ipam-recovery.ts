/**
 * The IPAM store at start: a store SQLite cannot read fully is never taken
 * for an empty one. It is moved aside (with its -wal and -shm) under a
 * timestamped name, and the allocations are rebuilt from what the node shows
 * in use (ipam/rebuild.ts decides; this module gathers and applies). A store
 * that reads fine still gets back any address of an endpoint record it lacks
 * (a WAL lost with its last transactions). When the rebuild cannot see
 * everything, allocations are refused with a message that says what to do,
 * and the agent serves on: a restart would only meet the same damage.
 */
import type { Ipam } from '../ipam/allocator.ts';
import { offsetOf } from '../ipam/pool.ts';
import { planRebuild, type NodeFacts, type RebuildPlan } from '../ipam/rebuild.ts';
import { prepareStore, type StoreCheck } from './store-check.ts';
import { IPAM_SCHEMA_VERSION } from '../ipam/store.ts';
import { ipToBigInt } from '../lib/cidr.ts';
import { errorMessage } from '../lib/errors.ts';
import { decodeEndpointInfo, decodeEndpointKey } from '../datapath/abi.ts';
import type { BpfMap } from '../datapath/bpf-map.ts';
import { listRoutes, openRtnl } from '../datapath/netlink.ts';
import { agentMark, listLinksWithAlias } from '../cni/host-veth.ts';
import type { Endpoint } from '../contract/api-types.ts';
import type { Datastore } from './datastore/datastore.ts';
import { runningOn } from './reclaim/ipam-reconcile.ts';

/** The store file as found at start (agent/store-check.ts). */
export type IpamStoreCheck = StoreCheck;

/** Checks the store at `file` before it is opened; a damaged one is moved aside. */
export function prepareIpamStore(file: string, log: (msg: string) => void, now = new Date()): IpamStoreCheck {
  return prepareStore(file, 'IPAM', { rebuilding: 'rebuilding the allocations from the node', refused: 'no address is handed out', schemaVersion: IPAM_SCHEMA_VERSION }, log, now);
}

/** What restoring the allocations reads. */
export interface IpamRecoveryDeps {
  ipam: Ipam;
  check: IpamStoreCheck;
  endpoints: Endpoint[];
  /** The pinned endpoint map (read before the first sync rewrites it from the endpoint records). */
  endpointMap: Pick<BpfMap, 'keys' | 'lookup'>;
  datastore: Datastore;
  nodeName: string;
  /** The agent's socket: its host veths carry the mark made from it. */
  socket: string;
  log: (msg: string) => void;
}

/** What the recovery did (for tests and the log). */
export interface IpamRecoveryReport {
  plan: RebuildPlan;
  placed: number;
  /** Sources that could not be read; any makes the IPAM refuse allocations after a rebuild. */
  unreadable: string[];
}

/**
 * Puts back the allocations the node shows in use: every source after a
 * damaged or missing store, the endpoint records otherwise. Call after the
 * datapath is adopted and the endpoint records are open, before the first
 * sync (which rewrites the endpoint map) and before any ADD is served.
 */
export async function restoreIpamAllocations(deps: IpamRecoveryDeps): Promise<IpamRecoveryReport> {
  const { ipam, check, log } = deps;
  const rebuild = check.movedTo !== null || check.missing;
  const facts: NodeFacts = { endpoints: deps.endpoints, veths: [], endpointMap: [], pods: [] };
  const unreadable: string[] = [];
  const read = async (what: string, fn: () => unknown): Promise<void> => {
    try {
      await fn();
    } catch (err: unknown) {
      unreadable.push(`${what}: ${errorMessage(err)}`);
    }
  };
  if (rebuild) {
    await read('host veths and their routes', async () => {
      const veths = await hostVeths(deps.socket);
      facts.veths = veths.owned;
      await read('the pinned endpoint map', () => (facts.endpointMap = endpointMapEntries(deps.endpointMap, veths.nameOf)));
    });
    await read('the datastore', () => {
      if (!(deps.datastore.ready?.() ?? true)) throw new Error(`${deps.datastore.describe()} has not listed every collection`);
      deps.datastore.refresh();
      const pods = deps.datastore.objects().pods;
      const here = runningOn(pods, deps.nodeName);
      facts.pods = pods
        .filter((p) => here.has(`${p.metadata.namespace}/${p.metadata.name}`))
        .map((p) => ({ namespace: p.metadata.namespace ?? '', name: p.metadata.name, ips: podIps(p.status) }));
    });
  }
  const inPools = (ip: string): boolean => {
    const value = ipToBigInt(ip);
    return ipam.pools.some((p) => p.cidr.family === (ip.includes(':') ? 6 : 4) && offsetOf(p, value) !== null);
  };
  const plan = planRebuild(facts, inPools, vethLivenessPath);
  const result = ipam.restore(plan.allocations);
  const unplaced = [...plan.unplaced, ...result.conflicts.map((c) => ({ ip: c.ip, why: `${c.containerID}/${c.ifname} shows it in use, but the store holds it for ${c.heldBy}` }))];
  const what = (p: (typeof plan.allocations)[number]): string => `${p.ip} ${p.namespace || '?'}/${p.pod || '?'} (${p.containerID.slice(0, 24)}/${p.ifname}; ${p.sources.join(', ')})`;
  const placed = plan.allocations.filter((a) => result.placed.includes(a));
  if (rebuild && (check.movedTo !== null || placed.length > 0)) {
    const from = check.movedTo ? `the damaged store moved aside to ${check.movedTo}` : 'the store was missing';
    log(`IPAM rebuilt (${from}): ${placed.length} allocation(s) put back: ${placed.map(what).join('; ') || 'none'}`);
  } else if (placed.length > 0) {
    log(`IPAM: the store lacked ${placed.length} address(es) of registered endpoints (a lost write?); put back: ${placed.map(what).join('; ')}`);
  }
  if (unplaced.length > 0) log(`IPAM: could not put back ${unplaced.length} address(es) in use${check.movedTo ? ` (damaged store: ${check.movedTo})` : ''}: ${unplaced.map((u) => `${u.ip}: ${u.why}`).join('; ')}`);
  if (check.refusal !== null) ipam.refuse(check.refusal);
  else if (rebuild && unreadable.length > 0) {
    const refusal =
      `the IPAM store was ${check.movedTo ? `damaged (moved aside to ${check.movedTo})` : 'missing'} and the rebuild could not read ${unreadable.join('; ')}: ` +
      'an address in use might be handed out again, so none is. Fix what could not be read, or drain the node so that no pod uses an address of its pod CIDRs, then restart the agent';
    ipam.refuse(refusal);
    log(refusal);
  }
  return { plan, placed: placed.length, unreadable };
}

/**
 * A path whose existence says a host veth still exists: reconciliation checks
 * it like a netns path (exists: keep; gone while /sys/class/net exists: release).
 * The veth goes when its pod's netns does, so this is the pod's liveness.
 */
export function vethLivenessPath(veth: string): string {
  return `/sys/class/net/${veth}`;
}

/**
 * This agent's host veths, the attachment their alias names and the addresses
 * routed to them; every link's name by index; and every veth with its index
 * and attachment (agent/endpoints-recovery.ts).
 */
export async function hostVeths(socket: string): Promise<{
  owned: NodeFacts['veths'];
  nameOf: (index: number) => string | null;
  links: { index: number; name: string; attachment: { containerID: string; ifname: string } | null }[];
}> {
  const rtnl = openRtnl();
  try {
    const links = await listLinksWithAlias(rtnl);
    const routes = await listRoutes(rtnl);
    const mark = `${agentMark(socket)} `;
    const names = new Map(links.map((l) => [l.index, l.name]));
    const owned: NodeFacts['veths'] = [];
    const veths: { index: number; name: string; attachment: { containerID: string; ifname: string } | null }[] = [];
    for (const link of links) {
      if (link.kind !== 'veth') continue;
      const attachment = link.alias.startsWith(mark) ? link.alias.slice(mark.length) : '';
      const slash = attachment.lastIndexOf('/');
      if (slash <= 0) {
        veths.push({ index: link.index, name: link.name, attachment: null });
        continue;
      }
      const ids = { containerID: attachment.slice(0, slash), ifname: attachment.slice(slash + 1) };
      veths.push({ index: link.index, name: link.name, attachment: ids });
      const ips = routes.filter((r) => r.index === link.index && /\/(32|128)$/.test(r.dst)).map((r) => r.dst.split('/')[0]!);
      owned.push({ name: link.name, ...ids, ips });
    }
    return { owned, nameOf: (index) => names.get(index) ?? null, links: veths };
  } finally {
    rtnl.close();
  }
}

/** The pinned endpoint map's addresses, each with the name of the veth it delivers to. */
function endpointMapEntries(map: Pick<BpfMap, 'keys' | 'lookup'>, nameOf: (index: number) => string | null): NodeFacts['endpointMap'] {
  const out: NodeFacts['endpointMap'] = [];
  for (const key of map.keys()) {
    const value = map.lookup(key);
    if (value === null) continue; // deleted since the walk
    out.push({ ip: decodeEndpointKey(key).address, hostVeth: nameOf(decodeEndpointInfo(value).ifindex) });
  }
  return out;
}

function podIps(status: unknown): string[] {
  const s = (status ?? {}) as { podIPs?: { ip: string }[]; podIP?: string };
  return s.podIPs?.map((p) => p.ip) ?? (s.podIP ? [s.podIP] : []);
}

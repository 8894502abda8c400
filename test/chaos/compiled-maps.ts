/**
 * Do a running agent's pinned maps equal the state its inputs compile to,
 * entry by entry? Answered with the agent's own diff code: the pinned maps
 * are copied into memory, a fresh DatapathSync (the full compiler) starts
 * from that copy as a restarted agent would, and is applied to the cluster's
 * datastore, the agent's endpoints and its identity numbers. Any entry it
 * would write or delete is a difference; each live slot is compared entry by
 * entry (slotHolds), dead slots and every ipcache entry are swept.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { clusterView, nodeAddresses } from '../../agent/datastore/cluster-view.ts';
import { LocalDirDatastore } from '../../agent/datastore/datastore.ts';
import { DatapathSync, type SyncedMaps, type SyncStats } from '../../agent/policy-sync/maps.ts';
import { agentRequest } from '../../contract/client.ts';
import type { Endpoint } from '../../contract/api-types.ts';
import { CIDR_POLICY_KEY, CIDR_POLICY_VALUE, decodeIpcacheKey, DEVICE_KEY_SIZE, encodeIpcacheValue, Identity, ENDPOINT_INFO, ENDPOINT_KEY, IPCACHE_KEY, IPCACHE_VALUE, POLICY_KEY, POLICY_VALUE } from '../../datapath/abi.ts';
import { BpfMap } from '../../datapath/bpf-map.ts';
import type { Numbering } from '../../policy/identity.ts';

/** The pinned maps the policy sync owns, with their key and value sizes. */
const PINNED = {
  endpoints: [ENDPOINT_KEY.size, ENDPOINT_INFO.size],
  devices: [DEVICE_KEY_SIZE, ENDPOINT_INFO.size],
  ipcache: [IPCACHE_KEY.size, IPCACHE_VALUE.size],
  policy: [POLICY_KEY.size, POLICY_VALUE.size],
  cidr_policy: [CIDR_POLICY_KEY.size, CIDR_POLICY_VALUE.size],
} as const;

/** A map held in memory, with the part of BpfMap's interface DatapathSync uses. */
class MemoryMap {
  readonly entries = new Map<string, Buffer>();
  keys(): Buffer[] {
    return [...this.entries.keys()].map((k) => Buffer.from(k, 'hex'));
  }
  lookup(key: Buffer): Buffer | null {
    return this.entries.get(key.toString('hex')) ?? null;
  }
  update(key: Buffer, value: Buffer): void {
    this.entries.set(key.toString('hex'), Buffer.from(value));
  }
  delete(key: Buffer): void {
    this.entries.delete(key.toString('hex'));
  }
}

/** A copy of one pinned map, read key by key (the agent may be writing: a key gone between next-key and lookup is skipped). */
function copyPinned(bpfDir: string, name: keyof typeof PINNED): MemoryMap {
  const [keySize, valueSize] = PINNED[name];
  const map = BpfMap.openPinned(path.join(bpfDir, 'maps', name), name, keySize, valueSize);
  try {
    const copy = new MemoryMap();
    for (const key of map.keys()) {
      const value = map.lookup(key);
      if (value) copy.update(key, value);
    }
    return copy;
  } finally {
    map.close();
  }
}

/** The agent's identity and selector numbers, read (never written) from its store; a number it never gave is new, past every known one. */
function agentNumbering(stateDir: string): Numbering {
  const known = { identity: new Map<string, number>(), selector: new Map<string, number>() };
  const file = path.join(stateDir, 'numbering.db');
  if (existsSync(file)) {
    const db = new DatabaseSync(file, { readOnly: true });
    try {
      for (const row of db.prepare('SELECT kind, key, number FROM numbering').all() as { kind: 'identity' | 'selector'; key: string; number: number }[]) known[row.kind].set(row.key, row.number);
    } finally {
      db.close();
    }
  }
  let unknown = 0x7fff_0000;
  const number = (kind: 'identity' | 'selector', key: string): number => {
    let n = known[kind].get(key);
    if (n === undefined) known[kind].set(key, (n = unknown++));
    return n;
  };
  return { identity: (key) => number('identity', key), selector: (key) => number('selector', key) };
}

/**
 * The host's addresses as the agent last read them: its ipcache entries of
 * the host identity. The agent re-reads them every 5 s, while the host-side
 * veths of every pod on the machine (other clusters' too) come and go with
 * link-local addresses; read here afresh, they would differ from the agent's
 * view all the time. Pods, policies and every other entry are compiled
 * independently of the maps.
 */
function hostAddressesIn(ipcache: MemoryMap): string[] {
  const host = encodeIpcacheValue(Identity.HOST).toString('hex');
  const out: string[] = [];
  for (const [key, value] of ipcache.entries) {
    if (value.toString('hex') !== host) continue;
    const prefix = decodeIpcacheKey(Buffer.from(key, 'hex'));
    if (prefix.prefixLength === (prefix.family === 6 ? 128 : 32)) out.push(prefix.address);
  }
  return out.sort();
}

/** A local cluster's paths, as TestCluster names them. */
export interface AgentPaths {
  dir: string;
  stateDir: string;
  bpfDir: string;
  socket: string;
}

/** The result of one comparison: the entries a sync from the pinned maps would still write and delete (both 0: equal). */
export interface MapsDiff {
  written: number;
  deleted: number;
  failed: string[];
  policyEntries: number;
  /** The first few entries that differ: map, key, value in the kernel and value compiled (hex; absent: -). */
  differences: string[];
}

const SHOWN_DIFFERENCES = 5;

/** Compares the pinned maps with the compiled state of the agent's current inputs. */
export async function diffMapsWithCompiledState(agent: AgentPaths, serviceCidrs: string[]): Promise<MapsDiff> {
  const endpoints = await agentRequest<Endpoint[]>(agent.socket, 'GET', '/v1/endpoints');
  const copies = Object.fromEntries((Object.keys(PINNED) as (keyof typeof PINNED)[]).map((name) => [name, copyPinned(agent.bpfDir, name)])) as Record<keyof typeof PINNED, MemoryMap>;
  const maps = { ...copies, ep_counters: new MemoryMap() } as unknown as SyncedMaps;
  const datastore = new LocalDirDatastore(path.join(agent.dir, 'datastore'));
  datastore.refresh();
  const objects = datastore.objects();
  const pinned = Object.fromEntries(Object.entries(copies).map(([name, m]) => [name, new Map(m.entries)]));
  const sync = new DatapathSync(maps, agentNumbering(agent.stateDir), serviceCidrs, 'full');
  const stats: SyncStats = sync.apply(clusterView(objects), endpoints, hostAddressesIn(copies.ipcache), nodeAddresses(objects));
  const differences: string[] = [];
  for (const [name, compiled] of Object.entries(copies)) {
    const kernel = pinned[name]!;
    for (const key of new Set([...kernel.keys(), ...compiled.entries.keys()])) {
      const [k, c] = [kernel.get(key)?.toString('hex') ?? '-', compiled.entries.get(key)?.toString('hex') ?? '-'];
      if (k !== c && differences.length < SHOWN_DIFFERENCES) differences.push(`${name} ${key}: kernel ${k}, compiled ${c}`);
    }
  }
  return { written: stats.written, deleted: stats.deleted, failed: stats.failed, policyEntries: pinned.policy!.size, differences };
}

/**
 * The immediate actions the rule engine decides, as entries of the kill and
 * deny-connect maps (bpf/security.h), and the diff that writes them: what
 * is in the kernel map is read back and compared, so a restarted agent
 * corrects what an older one left.
 *
 * A pod is named by namespace and name and found by its netns inode; '*' is
 * every pod (netns key 0, which the programs never apply to the host). An
 * entry of a pod not (yet) known is left out until the pod registers.
 */
import type { BpfMap } from '../../datapath/bpf-map.ts';
import { SEC_MAX_PORTS, encodeConnectRule, encodeKillKey, encodeKillValue, encodeU32Key, type ConnectRuleValue } from '../../datapath/security-abi.ts';

/** One pod, or '*': every pod of the node, never the host. */
export type PodSelector = { namespace: string; name: string } | '*';

/** Kill (SIGKILL at exec) the binary of this file name (as bpf/security.h's kill_key says) in the selected pods. */
export interface KillEntry {
  pod: PodSelector;
  /** The executed file's name, no directory: "nc", not "/usr/bin/nc". */
  binary: string;
  /** The caller's number for the rule (kept in the map entry). */
  rule: number;
}

/** Refuse (EPERM) connects of the selected pods: to any port but these (allow-only), or to these (deny). */
export interface DenyConnectEntry {
  pod: PodSelector;
  mode: 'allow-only' | 'deny';
  ports: number[];
  rule: number;
}

/** Map entries by key (hex). */
export type MapEntries = Map<string, { key: Buffer; value: Buffer }>;

const WILDCARD_NETNS = 0;

function netnsOf(pod: PodSelector, inodeOfPod: (ns: string, name: string) => number | undefined): number | undefined {
  return pod === '*' ? WILDCARD_NETNS : inodeOfPod(pod.namespace, pod.name);
}

/** The security_kill entries for these kill entries; pods with no known netns are left out. */
export function killMapEntries(entries: readonly KillEntry[], inodeOfPod: (ns: string, name: string) => number | undefined): MapEntries {
  const out: MapEntries = new Map();
  for (const e of entries) {
    const netns = netnsOf(e.pod, inodeOfPod);
    if (netns === undefined) continue;
    const key = encodeKillKey(netns, e.binary);
    if (!out.has(key.toString('hex'))) out.set(key.toString('hex'), { key, value: encodeKillValue(e.rule) });
  }
  return out;
}

/**
 * What several entries for one namespace amount to: each allow-only list
 * narrows what may be reached (their intersection), each deny list is taken
 * away from it. Throws when the result lists more than SEC_MAX_PORTS ports.
 */
export function mergeConnectEntries(entries: readonly DenyConnectEntry[]): ConnectRuleValue {
  const allow = entries.filter((e) => e.mode === 'allow-only');
  const denied = new Set(entries.filter((e) => e.mode === 'deny').flatMap((e) => e.ports));
  let value: ConnectRuleValue;
  if (allow.length > 0) {
    let allowed = new Set(allow[0]!.ports);
    for (const e of allow.slice(1)) allowed = new Set(e.ports.filter((p) => allowed.has(p)));
    value = { mode: 'allow-only', ports: [...allowed].filter((p) => !denied.has(p)).sort((a, b) => a - b), rule: allow[0]!.rule };
  } else {
    value = { mode: 'deny', ports: [...denied].sort((a, b) => a - b), rule: entries[0]!.rule };
  }
  if (value.ports.length > SEC_MAX_PORTS) {
    throw new Error(`deny-connect: ${value.ports.length} ports for one pod (rules ${[...new Set(entries.map((e) => e.rule))].join(', ')}), at most ${SEC_MAX_PORTS}`);
  }
  return value;
}

/**
 * The security_connect entries: one per namespace, a pod's own entries
 * merged with the every-pod ones (the program takes an exact entry over the
 * wildcard, so the exact one must include it).
 */
export function connectMapEntries(entries: readonly DenyConnectEntry[], inodeOfPod: (ns: string, name: string) => number | undefined): MapEntries {
  const byNetns = new Map<number, DenyConnectEntry[]>();
  for (const e of entries) {
    const netns = netnsOf(e.pod, inodeOfPod);
    if (netns === undefined) continue;
    byNetns.set(netns, [...(byNetns.get(netns) ?? []), e]);
  }
  const wildcard = byNetns.get(WILDCARD_NETNS) ?? [];
  const out: MapEntries = new Map();
  for (const [netns, own] of byNetns) {
    const key = encodeU32Key(netns);
    const all = netns === WILDCARD_NETNS ? own : [...own, ...wildcard];
    out.set(key.toString('hex'), { key, value: encodeConnectRule(mergeConnectEntries(all)) });
  }
  return out;
}

/** Makes the map hold exactly `desired`: updates what differs, deletes what is not wanted. Returns the counts. */
export function syncMap(map: BpfMap, desired: MapEntries): { written: number; deleted: number } {
  let written = 0;
  let deleted = 0;
  for (const key of map.keys()) {
    if (desired.has(key.toString('hex'))) continue;
    if (map.delete(key)) deleted++;
  }
  for (const { key, value } of desired.values()) {
    const now = map.lookup(key);
    if (now && now.equals(value)) continue;
    map.update(key, value);
    written++;
  }
  return { written, deleted };
}

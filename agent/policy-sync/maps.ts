/**
 * Keeps the datapath's maps equal to what the endpoints, the cluster and its
 * policies call for: compiles the state (pure: policy/incremental.ts, which
 * recomputes only what a change reaches, or the whole of policy/compile.ts
 * with SLUICE_POLICY_COMPILER=full), and writes only the difference: the
 * ipcache addresses the change touched, the endpoints whose compiled policy
 * is a new object, the slots nothing points at any more.
 *
 * An endpoint's policy changes atomically. Its rules live in two slots (see
 * SLUICE_POLICY_ID in bpf/sluice.h); a changed rule set or isolation is
 * written in full into the slot the endpoint does not use, the endpoint
 * switches over with one update of its endpoint_info (which also moves its
 * policy_rev on, so the datapath judges its established flows again), and the
 * old slot is deleted last. No packet ever sees the union of two rule sets,
 * nor half of one. The one change made in the live slot: entries of
 * identities that are new or gone since the last sync (a pod with a label set
 * nobody had, the last pod of one leaving), since no packet carried a new
 * identity under the old rules and none carries a gone one under the new;
 * flows of a pod whose identity changed are judged again for that change.
 */
import {
  COUNTER_NAMES,
  Counter,
  Direction,
  EndpointFlag,
  Identity,
  encodeCidrPolicyKey,
  encodeCidrPolicyValue,
  encodeEndpointInfo,
  encodeEndpointKey,
  encodeEpCounterKey,
  encodeIpcacheKey,
  encodeIpcacheValue,
  encodePolicyKey,
  encodePolicyValue,
  decodeEndpointInfo,
  policyId,
  POLICY_KEY,
  CIDR_POLICY_KEY,
  type EndpointInfo,
} from '../../datapath/abi.ts';
import type { BpfMap } from '../../datapath/bpf-map.ts';
import { compile, CompileCache, type CompiledEndpoint, type CompiledEntry, type CompiledState, type LocalEndpoint, type PolicyDirection } from '../../policy/compile.ts';
import type { Numbering } from '../../policy/identity.ts';
import { IncrementalCompiler } from '../../policy/incremental.ts';
import { endpointsWithUnknownLabels, isolatedEndpoint, isolateUnknownPods } from '../../policy/unknown-labels.ts';
import type { ClusterChanges, ClusterView } from '../../policy/types.ts';
import type { Endpoint } from '../../contract/api-types.ts';
import { errorMessage } from '../../lib/errors.ts';

/** The maps this module owns. */
export interface SyncedMaps {
  endpoints: BpfMap;
  devices: BpfMap;
  ipcache: BpfMap;
  policy: BpfMap;
  cidr_policy: BpfMap;
  /** Per-endpoint counters: the datapath creates them, the sync removes a gone endpoint's. */
  ep_counters: BpfMap;
}

/** What one sync changed. */
export interface SyncStats {
  written: number;
  deleted: number;
  durationMs: number;
  /**
   * Map writes and deletes the kernel refused (a full map, most likely), at
   * most MAX_FAILURES of them. The sync carries on past each: every other
   * entry, endpoint and map is still brought up to date.
   */
  failed: string[];
  /** Endpoints whose endpoint_info the kernel refused: their traffic is dropped (fail closed), and a registration of one must fail. */
  unserved: number[];
}

const MAX_FAILURES = 20;

type MapName = Exclude<keyof SyncedMaps, 'ep_counters'>;
type Contents = Map<string, string>; // key hex → value hex

/** Every map this module owns. */
const MAP_NAMES: MapName[] = ['ipcache', 'endpoints', 'devices', 'policy', 'cidr_policy'];
/** The maps holding per-slot rules, and where their keys carry the policy id. */
const RULE_MAPS = { policy: POLICY_KEY.members.policy_id!, cidr_policy: CIDR_POLICY_KEY.members.policy_id! } as const;
type RuleMap = keyof typeof RULE_MAPS;

/** What a sync compiles from: a whole view of the cluster, or the datastore's changes since the last sync (incremental compiler only). */
type SyncInput = { view: ClusterView } | { changes: ClusterChanges; isolateUnknownPods: boolean };

/** Which compiler a sync uses: the incremental one, or the whole cluster every time (the reference, kept as a fallback). */
export type PolicyCompilerKind = 'incremental' | 'full';

/** The environment variable that picks the compiler (`full` falls back to compiling the whole cluster on every sync). */
export const POLICY_COMPILER_ENV = 'SLUICE_POLICY_COMPILER';

function compilerFromEnv(): PolicyCompilerKind {
  return process.env[POLICY_COMPILER_ENV] === 'full' ? 'full' : 'incremental';
}

/** Policy's directions as the datapath numbers them: the one place they are translated. */
const DIRECTION: Record<PolicyDirection, number> = { ingress: Direction.INGRESS, egress: Direction.EGRESS };

function hostPrefixLength(ip: string): number {
  return ip.includes(':') ? 128 : 32;
}

/** Allow entries that one compiled endpoint has and the other has not. */
interface EntryDelta {
  added: CompiledEntry[];
  removed: CompiledEntry[];
}

function entryKey(e: CompiledEntry): string {
  return `${e.direction}/${e.peer}/${e.protocol}/${e.port}/${e.portPrefixLength}`;
}

/**
 * The entries that changed from before to after, when every one of them
 * names an identity in changed and nothing else differs (isolation is
 * compared by the caller); null otherwise.
 */
function identityDelta(before: CompiledEndpoint, after: CompiledEndpoint, changed: Set<number>): EntryDelta | null {
  if (changed.size === 0 || before.cidrEntries.length !== after.cidrEntries.length) return null;
  const cidrKey = (e: CompiledEndpoint['cidrEntries'][number]) => `${e.direction}/${e.address}/${e.prefixLength}/${e.selector}`;
  const beforeCidr = new Set(before.cidrEntries.map(cidrKey));
  if (!after.cidrEntries.every((e) => beforeCidr.has(cidrKey(e)))) return null;
  const had = new Map(before.entries.map((e) => [entryKey(e), e]));
  const added: CompiledEntry[] = [];
  for (const e of after.entries) {
    if (had.delete(entryKey(e))) continue;
    if (!changed.has(e.peer)) return null;
    added.push(e);
  }
  const removed = [...had.values()];
  if (removed.some((e) => !changed.has(e.peer))) return null;
  return { added, removed };
}

/** Keys in one map and not the other. */
function changedKeys(before: Map<number, unknown> | undefined, after: Map<number, unknown>): Set<number> {
  const out = new Set<number>();
  for (const k of after.keys()) if (!before?.has(k)) out.add(k);
  for (const k of before?.keys() ?? []) if (!after.has(k)) out.add(k);
  return out;
}

/** Encodes a host ifindex as the devices map key (host byte order __u32). */
export function deviceKey(ifindex: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(ifindex);
  return key;
}

/** Owns the contents of the endpoint, ipcache and policy maps. */
export class DatapathSync {
  private readonly maps: SyncedMaps;
  private readonly numbering: Numbering;
  private readonly current = new Map<MapName, Contents>();
  /** Keys of the rule maps by policy id (slot): what each slot holds. */
  private readonly slots = new Map<number, { policy: Set<string>; cidr_policy: Set<string> }>();
  /** Per endpoint id: its policy revision in the maps, and the compiled endpoint its live slot was last checked against. */
  private readonly installed = new Map<number, { rev: number; flags: number; compiled: CompiledEndpoint | null }>();
  private compiled: CompiledState | null = null;
  /** The endpoints the last compile isolated because their labels are not known yet. */
  private awaitingLabels: readonly number[] = [];
  private readonly cache = new CompileCache();
  /** The incremental compiler, or null when every sync compiles the whole cluster. */
  private readonly incremental: IncrementalCompiler | null;
  /** The ipcache's pod entries (key hex → value hex) as last compiled. */
  private podIpcache: Contents = new Map();
  /** The ipcache's other entries: node and host addresses over the pods', Service ranges under them; and the inputs they came from. */
  private fixedIpcache: { over: Contents; under: Contents; inputs: string } = { over: new Map(), under: new Map(), inputs: '' };
  /** False until a sync has compared every ipcache entry the map held (entries an earlier agent left). */
  private ipcacheSwept = false;
  /** ipcache keys the kernel refused to take or give up: compared again on the next sync. */
  private ipcacheRetry = new Set<string>();
  /** Encoded rules of a compiled endpoint, per slot: the compiler hands back the same object while it is unchanged. */
  private readonly encoded = new WeakMap<CompiledEndpoint, Map<number, Record<RuleMap, Contents>>>();

  /** The cluster's Service (ClusterIP) ranges: the ipcache names them so from-pod leaves their egress check to the backend. */
  private readonly serviceCidrs: string[];

  constructor(maps: SyncedMaps, numbering: Numbering, serviceCidrs: string[] = [], compiler: PolicyCompilerKind = compilerFromEnv()) {
    this.maps = maps;
    this.numbering = numbering;
    this.serviceCidrs = serviceCidrs;
    this.incremental = compiler === 'incremental' ? new IncrementalCompiler(numbering) : null;
    // The maps may outlive agents: start from what they hold, so the first sync is a diff too.
    for (const name of MAP_NAMES) {
      const contents: Contents = new Map();
      this.current.set(name, contents);
      const map = maps[name];
      for (const key of map.keys()) {
        const value = map.lookup(key);
        if (!value) continue;
        contents.set(key.toString('hex'), value.toString('hex'));
        if (name === 'policy' || name === 'cidr_policy') this.slot(key.readUInt32LE(RULE_MAPS[name]))[name].add(key.toString('hex'));
      }
    }
    for (const value of this.current.get('devices')!.values()) {
      const info = decodeEndpointInfo(Buffer.from(value, 'hex'));
      this.installed.set(info.endpointId, { rev: info.policyRev, flags: info.flags, compiled: null });
    }
  }

  /**
   * A gone endpoint's counters: ids are never reused, so left in place they
   * would fill ep_counters after enough pod churn, and counting would stop.
   * One delete per counter, not a walk of the map.
   */
  private forgetCounters(endpointId: number): void {
    for (const name of COUNTER_NAMES) {
      try {
        this.maps.ep_counters.delete(encodeEpCounterKey(endpointId, Counter[name]));
      } catch (err: unknown) {
        // Not a failure of the sync's own state: the next gone endpoint tries again, the datapath keeps counting.
        this.failureCount++;
        if (this.failures.length < MAX_FAILURES) this.failures.push(`delete ep_counters of endpoint ${endpointId}: ${errorMessage(err)}`);
      }
    }
  }

  private slot(id: number): { policy: Set<string>; cidr_policy: Set<string> } {
    let s = this.slots.get(id);
    if (!s) this.slots.set(id, (s = { policy: new Set(), cidr_policy: new Set() }));
    return s;
  }

  /** Failures of the sync under way (see SyncStats.failed). */
  private failures: string[] = [];
  private failureCount = 0;

  private failed(op: string, name: MapName, err: unknown): false {
    this.failureCount++;
    if (this.failures.length < MAX_FAILURES) this.failures.push(`${op} ${name}: ${errorMessage(err)}`);
    return false;
  }

  private write(name: MapName, key: string, value: string): boolean {
    const have = this.current.get(name)!;
    if (have.get(key) === value) return false;
    try {
      this.maps[name].update(Buffer.from(key, 'hex'), Buffer.from(value, 'hex'));
    } catch (err) {
      return this.failed('update', name, err);
    }
    have.set(key, value);
    if (name === 'policy' || name === 'cidr_policy') this.slot(Buffer.from(key, 'hex').readUInt32LE(RULE_MAPS[name]))[name].add(key);
    return true;
  }

  private remove(name: MapName, key: string): boolean {
    try {
      this.maps[name].delete(Buffer.from(key, 'hex'));
    } catch (err) {
      return this.failed('delete', name, err);
    }
    this.current.get(name)!.delete(key);
    if (name === 'policy' || name === 'cidr_policy') {
      const id = Buffer.from(key, 'hex').readUInt32LE(RULE_MAPS[name]);
      const s = this.slots.get(id);
      s?.[name].delete(key);
      if (s && s.policy.size === 0 && s.cidr_policy.size === 0) this.slots.delete(id);
    }
    return true;
  }

  /** Makes a slot hold exactly these rules; returns how many entries it wrote and deleted. */
  private fillSlot(id: number, rules: Record<RuleMap, Contents>): { written: number; deleted: number } {
    let written = 0;
    let deleted = 0;
    for (const name of Object.keys(RULE_MAPS) as RuleMap[]) {
      for (const key of [...(this.slots.get(id)?.[name] ?? [])]) {
        if (rules[name].has(key)) continue;
        if (this.remove(name, key)) deleted++;
      }
      for (const [key, value] of rules[name]) if (this.write(name, key, value)) written++;
    }
    return { written, deleted };
  }

  /**
   * Adds and removes one slot's entries of identities that are new or gone.
   * Safe in the live slot: no packet carried a new identity under the old
   * rules, none carries a gone one under the new, so every packet is judged
   * by the old rules or the new, never by a mix; flows of pods whose
   * identity changed are judged again through their identity.
   */
  private patchSlot(id: number, delta: EntryDelta): { written: number; deleted: number } {
    let written = 0;
    let deleted = 0;
    const have = this.current.get('policy')!;
    for (const e of delta.removed) {
      const key = encodePolicyKey({ ...e, direction: DIRECTION[e.direction], policyId: id }).toString('hex');
      if (have.has(key) && this.remove('policy', key)) deleted++;
    }
    const allow = encodePolicyValue().toString('hex');
    for (const e of delta.added) {
      if (this.write('policy', encodePolicyKey({ ...e, direction: DIRECTION[e.direction], policyId: id }).toString('hex'), allow)) written++;
    }
    return { written, deleted };
  }

  /** Does the slot hold exactly these rules? */
  private slotHolds(id: number, rules: Record<RuleMap, Contents>): boolean {
    const s = this.slots.get(id);
    const have = this.current.get('policy')!;
    const haveCidr = this.current.get('cidr_policy')!;
    if ((s?.policy.size ?? 0) !== rules.policy.size || (s?.cidr_policy.size ?? 0) !== rules.cidr_policy.size) return false;
    for (const [key, value] of rules.policy) if (have.get(key) !== value) return false;
    for (const [key, value] of rules.cidr_policy) if (haveCidr.get(key) !== value) return false;
    return true;
  }

  /** The endpoints the last sync isolated both ways because the datastore has not delivered their pod or namespace yet. */
  endpointsAwaitingLabels(): readonly number[] {
    return this.awaitingLabels;
  }

  /** The state the last sync compiled (null before the first). */
  state(): CompiledState | null {
    return this.compiled;
  }

  /** Compiles the desired state of a whole view of the cluster and writes its difference from the maps. */
  apply(view: ClusterView, endpoints: Endpoint[], hostAddresses: string[], nodeAddresses: string[] = []): SyncStats {
    return this.applyInput({ view }, endpoints, hostAddresses, nodeAddresses);
  }

  /** True when the sync can take the datastore's changes (applyChanges) rather than whole views: the incremental compiler. */
  takesChanges(): boolean {
    return this.incremental !== null;
  }

  /**
   * Like apply(), from the datastore's changes since the view or changes
   * this sync last took (isolateUnknownPods as in ClusterView): one event
   * costs what it changes. Only when takesChanges().
   */
  applyChanges(changes: ClusterChanges, isolateUnknownPods: boolean, endpoints: Endpoint[], hostAddresses: string[], nodeAddresses: string[] = []): SyncStats {
    if (!this.incremental) throw new Error('the full policy compiler reads whole views: use apply()');
    return this.applyInput({ changes, isolateUnknownPods }, endpoints, hostAddresses, nodeAddresses);
  }

  private applyInput(input: SyncInput, endpoints: Endpoint[], hostAddresses: string[], nodeAddresses: string[]): SyncStats {
    const started = performance.now();
    const local = endpoints.map((e) => ({ endpointId: e.id, namespace: e.namespace, pod: e.pod, ips: e.ips }));
    const previous = this.compiled;
    const compiled = this.compile(input, local);
    const identityChanges = this.incremental ? this.incremental.takeIdentityChanges() : changedKeys(previous?.identities, compiled.identities);
    let written = 0;
    let deleted = 0;
    this.failures = [];
    this.failureCount = 0;
    // 1. Addresses and identities first: rules about to go live may name them.
    const ipcache = this.ipcacheChanges(compiled, hostAddresses, nodeAddresses);
    for (const [key, value] of ipcache) if (value !== undefined && this.write('ipcache', key, value)) written++;
    // 2. Each endpoint whose rules or isolation changed gets them in full in its other slot.
    const live = new Set<number>();
    const byId = new Map(compiled.endpoints.map((c) => [c.endpointId, c]));
    const infos: EndpointInfo[] = [];
    for (const ep of endpoints) {
      const c = byId.get(ep.id)!;
      const flags = (c.ingressIsolated ? EndpointFlag.INGRESS_ISOLATED : 0) | (c.egressIsolated ? EndpointFlag.EGRESS_ISOLATED : 0);
      const was = this.installed.get(ep.id);
      let rev = was?.rev ?? 0;
      let unchanged = was !== undefined && was.flags === flags && was.compiled === c;
      // Rules that differ only in identities that came or went since the last sync change in the live slot.
      const delta = !unchanged && was?.compiled && was.flags === flags ? this.givenDelta(was.compiled, c) ?? identityDelta(was.compiled, c, identityChanges) : null;
      if (delta && delta.added.length === 0 && delta.removed.length === 0) unchanged = true;
      else if (!delta && !unchanged && was !== undefined && was.flags === flags) unchanged = this.slotHolds(policyId(ep.id, rev), this.rules(c, policyId(ep.id, rev)));
      const inPlace = !unchanged && delta !== null;
      // A new endpoint has no traffic yet: its first slot is filled in place.
      if (was !== undefined && !unchanged && !inPlace) rev = (rev + 1) >>> 0;
      let complete = true;
      if (inPlace) {
        const before = this.failureCount;
        const n = this.patchSlot(policyId(ep.id, rev), delta);
        written += n.written;
        deleted += n.deleted;
        complete = this.failureCount === before;
      } else if (!unchanged) {
        const before = this.failureCount;
        const n = this.fillSlot(policyId(ep.id, rev), this.rules(c, policyId(ep.id, rev)));
        written += n.written;
        deleted += n.deleted;
        // A slot that did not fit still goes live: it holds a subset of the new rules, which allows
        // less than they do, never more (rules() puts the most specific address prefixes first).
        // The next sync tries the whole set again.
        complete = this.failureCount === before;
      }
      this.installed.set(ep.id, { rev, flags, compiled: complete ? c : null });
      live.add(policyId(ep.id, rev));
      infos.push(this.endpointInfo(ep, c, flags, rev));
    }
    // 3. The switch: one endpoint_info update per map and endpoint.
    const wantInfo = { endpoints: new Map<string, string>(), devices: new Map<string, string>() };
    for (const info of infos) {
      const value = encodeEndpointInfo(info).toString('hex');
      wantInfo.devices.set(deviceKey(info.ifindex).toString('hex'), value);
      for (const ip of [info.ipv4, info.ipv6]) if (ip !== null) wantInfo.endpoints.set(encodeEndpointKey({ family: ip.includes(':') ? 6 : 4, address: ip }).toString('hex'), value);
    }
    const unserved = new Set<number>();
    for (const name of ['endpoints', 'devices'] as const) {
      for (const [key, value] of wantInfo[name]) {
        if (this.write(name, key, value)) written++;
        else if (this.current.get(name)!.get(key) !== value) unserved.add(decodeEndpointInfo(Buffer.from(value, 'hex')).endpointId);
      }
    }
    // 4. Whatever nothing points at any more: gone endpoints, then old slots, then addresses.
    for (const name of ['devices', 'endpoints'] as const) {
      for (const key of [...this.current.get(name)!.keys()]) {
        if (wantInfo[name].has(key)) continue;
        if (this.remove(name, key)) deleted++;
      }
    }
    const deadSlots = [...this.slots.keys()].filter((id) => !live.has(id));
    for (const name of Object.keys(RULE_MAPS) as RuleMap[]) {
      for (const id of deadSlots) for (const key of [...(this.slots.get(id)?.[name] ?? [])]) if (this.remove(name, key)) deleted++;
    }
    for (const [key, value] of ipcache) if (value === undefined && this.current.get('ipcache')!.has(key) && this.remove('ipcache', key)) deleted++;
    for (const [key, value] of ipcache) if (this.current.get('ipcache')!.get(key) !== value) this.ipcacheRetry.add(key);
    const present = new Set(endpoints.map((e) => e.id));
    for (const id of this.installed.keys()) {
      if (present.has(id)) continue;
      this.installed.delete(id);
      this.forgetCounters(id);
    }
    this.compiled = compiled;
    const failed = this.failureCount > this.failures.length ? [...this.failures, `... and ${this.failureCount - this.failures.length} more`] : this.failures;
    return { written, deleted, durationMs: performance.now() - started, failed, unserved: [...unserved] };
  }

  /** The incremental compiler's own delta from before to after (entries of identities made or dropped), when after was patched from before. */
  private givenDelta(before: CompiledEndpoint, after: CompiledEndpoint): EntryDelta | null {
    const patch = this.incremental?.entryDeltaOf(after);
    return patch && patch.from === before ? patch.delta : null;
  }

  /** The compiled state: a pod whose labels the datastore has not delivered yet is isolated both ways until it has. */
  private compile(input: SyncInput, local: LocalEndpoint[]): CompiledState {
    this.awaitingLabels = [];
    if (!this.incremental) {
      if (!('view' in input)) throw new Error('the full policy compiler reads whole views');
      const { view } = input;
      this.awaitingLabels = [...endpointsWithUnknownLabels(view, local)];
      return isolateUnknownPods(view, local, compile(view, local, this.numbering, this.cache));
    }
    if ('view' in input) this.incremental.applyView(input.view, local);
    else this.incremental.applyChanges(input.changes, local);
    const state = this.incremental.state();
    if (!('view' in input ? input.view.isolateUnknownPods : input.isolateUnknownPods)) return state;
    const unknown = new Set(local.filter((ep) => !this.incremental!.hasPod(ep.namespace, ep.pod) || !this.incremental!.hasNamespace(ep.namespace)).map((ep) => ep.endpointId));
    this.awaitingLabels = [...unknown];
    if (unknown.size === 0) return state;
    return { ...state, endpoints: state.endpoints.map((c) => (unknown.has(c.endpointId) ? isolatedEndpoint(c) : c)) };
  }

  /**
   * The ipcache keys this sync may change, each with the value the state
   * calls for (undefined: delete). With the incremental compiler, the
   * addresses its events touched, plus every node, host and Service entry
   * when those inputs changed; with the full one (and on the first sync),
   * every entry.
   */
  private ipcacheChanges(compiled: CompiledState, hostAddresses: string[], nodeAddresses: string[]): Map<string, string | undefined> {
    const candidates = this.ipcacheRetry;
    this.ipcacheRetry = new Set();
    if (this.incremental) {
      for (const address of this.incremental.takeIpcacheChanges()) {
        const key = encodeIpcacheKey({ family: address.includes(':') ? 6 : 4, address, prefixLength: hostPrefixLength(address) }).toString('hex');
        const entry = this.incremental.ipcacheEntry(address);
        if (entry) this.podIpcache.set(key, encodeIpcacheValue(entry.identity).toString('hex'));
        else this.podIpcache.delete(key);
        candidates.add(key);
      }
    } else {
      const pods: Contents = new Map();
      for (const e of compiled.ipcache) pods.set(encodeIpcacheKey(e).toString('hex'), encodeIpcacheValue(e.identity).toString('hex'));
      for (const key of this.podIpcache.keys()) candidates.add(key);
      for (const key of pods.keys()) candidates.add(key);
      this.podIpcache = pods;
      this.ipcacheSwept = false;
    }
    const inputs = JSON.stringify([this.serviceCidrs, hostAddresses, nodeAddresses]);
    if (inputs !== this.fixedIpcache.inputs) {
      for (const key of this.fixedIpcache.over.keys()) candidates.add(key);
      for (const key of this.fixedIpcache.under.keys()) candidates.add(key);
      this.fixedIpcache = { ...this.fixedEntries(hostAddresses, nodeAddresses), inputs };
      for (const key of this.fixedIpcache.over.keys()) candidates.add(key);
      for (const key of this.fixedIpcache.under.keys()) candidates.add(key);
    }
    if (!this.ipcacheSwept) {
      for (const key of this.current.get('ipcache')!.keys()) candidates.add(key);
      for (const key of this.podIpcache.keys()) candidates.add(key);
      this.ipcacheSwept = true;
    }
    const out = new Map<string, string | undefined>();
    for (const key of candidates) out.set(key, this.fixedIpcache.over.get(key) ?? this.podIpcache.get(key) ?? this.fixedIpcache.under.get(key));
    return out;
  }

  /** The ipcache entries that are not pods': every node's addresses and this node's own over the pods', the Service ranges under them. */
  private fixedEntries(hostAddresses: string[], nodeAddresses: string[]): { over: Contents; under: Contents } {
    const over: Contents = new Map();
    const under: Contents = new Map();
    const hostKey = (ip: string) => encodeIpcacheKey({ family: ip.includes(':') ? 6 : 4, address: ip, prefixLength: hostPrefixLength(ip) }).toString('hex');
    for (const cidr of this.serviceCidrs) {
      const [address, len] = cidr.split('/') as [string, string];
      under.set(encodeIpcacheKey({ family: address.includes(':') ? 6 : 4, address, prefixLength: Number(len) }).toString('hex'), encodeIpcacheValue(Identity.SERVICE).toString('hex'));
    }
    // Every node's addresses are remote nodes; this node's own are overwritten with the host identity just below.
    for (const ip of nodeAddresses) over.set(hostKey(ip), encodeIpcacheValue(Identity.REMOTE_NODE).toString('hex'));
    // This node's own addresses: traffic from them to local pods is always allowed.
    for (const ip of hostAddresses) over.set(hostKey(ip), encodeIpcacheValue(Identity.HOST).toString('hex'));
    return { over, under };
  }

  private endpointInfo(ep: Endpoint, c: CompiledEndpoint, flags: number, policyRev: number): EndpointInfo {
    return {
      ifindex: ep.hostIfindex,
      endpointId: ep.id,
      identity: c.identity,
      flags,
      policyRev,
      mac: ep.mac,
      hostMac: ep.hostMac,
      ipv4: ep.ips.find((ip) => !ip.includes(':')) ?? null,
      ipv6: ep.ips.find((ip) => ip.includes(':')) ?? null,
    };
  }

  /** The endpoint's rules encoded for one of its slots. */
  private rules(c: CompiledEndpoint, slot: number): Record<RuleMap, Contents> {
    let bySlot = this.encoded.get(c);
    if (!bySlot) this.encoded.set(c, (bySlot = new Map()));
    let hit = bySlot.get(slot);
    if (!hit) {
      const allow = encodePolicyValue().toString('hex');
      hit = {
        policy: new Map(c.entries.map((e) => [encodePolicyKey({ ...e, direction: DIRECTION[e.direction], policyId: slot }).toString('hex'), allow])),
        // Longest prefixes first: a slot cut short by a full map then lacks the widest blocks, so an
        // address it misses matches no selector (denied), never a wider one past its except.
        cidr_policy: new Map(
          [...c.cidrEntries].sort((a, b) => b.prefixLength - a.prefixLength).map((e) => [encodeCidrPolicyKey({ ...e, direction: DIRECTION[e.direction], policyId: slot }).toString('hex'), encodeCidrPolicyValue(e.selector).toString('hex')]),
        ),
      };
      bySlot.set(slot, hit);
    }
    return hit;
  }
}

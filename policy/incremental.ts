/**
 * The incremental policy compiler (issue 16): a pod, namespace or policy
 * event recomputes only what it touches, and the result stays equal to
 * compile() over the same cluster (test/policy-incremental.test.ts checks it
 * after every event of random event sequences). Pure: numbering is handed in.
 *
 * What it keeps, the way Cilium's pkg/policy does:
 * - identities, reference-counted by the pods that have them: one is made
 *   when its first pod arrives and dropped with its last;
 * - a selector cache: each peer selector of a policy → the identities it
 *   takes, updated as identities come and go (one test per cached selector
 *   for a new identity, none at all for a pod joining an identity that
 *   exists);
 * - the ipcache (address → identity), changed straight from pod events, with
 *   the addresses touched since the last takeIpcacheChanges();
 * - each local endpoint's compiled policy, recomputed only when its own pod,
 *   the policies of its namespace, or a selector its policies use changed
 *   (or any pod's addresses or ports, for the rare endpoint whose egress
 *   names ports: those resolve on every remote pod). An endpoint that was not
 *   recomputed keeps the same CompiledEndpoint object, so the map sync skips
 *   it by identity.
 *
 * One difference from compile(), on purpose: when two pods claim one address
 * (a stale pod object whose address was reused), compile() gives it the pod
 * later in the datastore's order, this compiler the pod that claimed it last.
 */
import {
  compileEndpoint,
  compileRule,
  isolates,
  isNamed,
  peerTakes,
  selectorsOf,
  type CompiledEndpoint,
  type CompiledEntry,
  type CompiledState,
  type IpcacheEntry,
  type LocalEndpoint,
  type PeerIdentity,
  type PolicyDirection,
  type RuleResult,
  type RuleSource,
} from './compile.ts';
import { identityKey, type IdentityLabels, type Numbering } from './identity.ts';
import { selectorMatches } from './selector.ts';
import type { ClusterChanges, ClusterView, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyRule, PolicyPod } from './types.ts';

/** namespace/name of a pod or a policy. */
type ObjectKey = string;

function keyOf(namespace: string, name: string): ObjectKey {
  return `${namespace}/${name}`;
}

/** An identity and the pods that hold it (its reference count is their number). */
class IdentityEntry implements PeerIdentity {
  readonly id: number;
  readonly key: string;
  readonly labels: IdentityLabels;
  readonly members = new Map<ObjectKey, PolicyPod>();
  constructor(id: number, key: string, labels: IdentityLabels) {
    this.id = id;
    this.key = key;
    this.labels = labels;
  }
  get pods(): Iterable<PolicyPod> {
    return this.members.values();
  }
}

/** A peer selector of some policies, with the identities it takes. */
class CachedSelector {
  readonly key: string;
  readonly peer: NetworkPolicyPeer;
  /** The namespace of the policies using it (a podSelector alone stays in it). */
  readonly namespace: string;
  readonly matches = new Map<number, IdentityEntry>();
  users = 0;
  constructor(key: string, peer: NetworkPolicyPeer, namespace: string) {
    this.key = key;
    this.peer = peer;
    this.namespace = namespace;
  }
}

interface PolicyRecord {
  policy: NetworkPolicy;
  text: string;
  selectors: CachedSelector[];
  /** An egress rule names ports: they resolve on remote pods. */
  namedEgress: boolean;
}

/** One rule's result, shared by every endpoint its policy selects (named ingress ports resolve per endpoint: in the key). */
interface CachedRule {
  result: RuleResult;
  policyKey: ObjectKey;
  /** The selectors of its peers: the result is stale once one of them takes other identities. */
  selectors: Set<CachedSelector>;
  /** Named egress ports resolve on remote pods: stale once any pod changes. */
  podDependent: boolean;
}

interface EndpointRecord {
  ep: LocalEndpoint;
  podKey: ObjectKey;
  compiled: CompiledEndpoint | null;
  /** The policies selecting it when it was last compiled. */
  selecting: NetworkPolicy[];
  /** The selectors of those policies. */
  selectors: Set<CachedSelector>;
  podDependent: boolean;
}

/** Entries one compiled endpoint has and another has not. */
export interface EntryDelta {
  added: CompiledEntry[];
  removed: CompiledEntry[];
}

function entryKey(e: CompiledEntry): string {
  return `${e.direction}/${e.peer}/${e.protocol}/${e.port}/${e.portPrefixLength}`;
}

/**
 * The pods claiming one address, with their identity, the last claim last.
 * Nearly always one: kept inline, since a Map per address cost about 170
 * bytes per pod of the cluster.
 */
type Claims = { podKey: ObjectKey; identity: number } | Map<ObjectKey, number>;

/** A pod as compiled: the datastore's object (addresses of a local endpoint authoritative) and its identity. */
interface PodRecord {
  /** The datastore's object; undefined for a local endpoint whose pod the datastore does not have. */
  stored: PolicyPod | undefined;
  pod: PolicyPod;
  identity: IdentityEntry;
}

function sameStrings(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  if (a === b) return true;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

function samePod(a: PolicyPod, b: PolicyPod): boolean {
  return a === b || (sameLabels(a.labels, b.labels) && sameStrings(a.ips, b.ips) && JSON.stringify(a.ports) === JSON.stringify(b.ports));
}

/** The peers of a policy that select by labels (an ipBlock peer selects by address, whatever else it holds). */
function selectorPeers(policy: NetworkPolicy): NetworkPolicyPeer[] {
  const out: NetworkPolicyPeer[] = [];
  for (const rule of [...(policy.ingress ?? []), ...(policy.egress ?? [])]) for (const peer of [...(rule.from ?? []), ...(rule.to ?? [])]) if (!peer.ipBlock) out.push(peer);
  return out;
}

/** Keeps the compiled policy of the local endpoints up to date, event by event. */
export class IncrementalCompiler {
  private readonly numbering: Numbering;
  private readonly namespaces = new Map<string, Record<string, string>>();
  /** Pods as compiled (with the datastore's object): the datastore's, and local endpoints that have no pod object yet. */
  private readonly pods = new Map<ObjectKey, PodRecord>();
  /** How many of those the datastore has. */
  private storedPods = 0;
  private readonly podsByNamespace = new Map<string, Set<ObjectKey>>();
  private readonly identities = new Map<string, IdentityEntry>();
  /** Identity number → its labels: the state's map, kept in place. */
  private readonly identityLabels = new Map<number, IdentityLabels>();
  private readonly identityById = new Map<number, IdentityEntry>();
  /** Identities made or dropped since the last flush: the entries naming them are all an endpoint patch recomputes. */
  private readonly flushIdentities = new Set<number>();
  /** A patched endpoint → the endpoint it was patched from and the entries that differ (see entryDeltaOf). */
  private readonly patches = new WeakMap<CompiledEndpoint, { from: CompiledEndpoint; delta: EntryDelta }>();
  private readonly selectors = new Map<string, CachedSelector>();
  private readonly selectorOfPeer = new WeakMap<NetworkPolicyPeer, CachedSelector>();
  private readonly policies = new Map<ObjectKey, PolicyRecord>();
  private readonly policiesByNamespace = new Map<string, Map<ObjectKey, PolicyRecord>>();
  private readonly endpoints = new Map<number, EndpointRecord>();
  private readonly endpointOfPod = new Map<ObjectKey, number>();
  /** Address → the pods claiming it, with their identity; the last claim wins. */
  private readonly claims = new Map<string, Claims>();
  private ipcacheList: IpcacheEntry[] | null = null;
  private readonly touchedAddresses = new Set<string>();
  private readonly identityChanges = new Set<number>();
  // What changed since the last flush.
  private readonly dirty = new Set<number>();
  private readonly changedSelectors = new Set<CachedSelector>();
  /** A pod changed that has (or had) a container port named as an egress rule names one: named egress results may differ. */
  private podsChanged = false;
  /** The port names egress rules name (with how many policies name each): only pods with one of them bear on named egress results. */
  private readonly namedEgressPorts = new Map<string, number>();
  private readonly source: RuleSource;
  private readonly policyTexts = new WeakMap<NetworkPolicy, string>();
  private readonly rules = new Map<string, CachedRule>();
  /** Endpoints compiled by the last flushes (for tests and measurements). */
  recompiled = 0;

  constructor(numbering: Numbering) {
    this.numbering = numbering;
    this.source = {
      peerIdentities: (peer, policyNamespace) => {
        const cached = this.selectorOfPeer.get(peer);
        if (cached) return cached.matches.values();
        return [...this.identities.values()].filter((i) => peerTakes(peer, policyNamespace, i.labels));
      },
      allPods: () => [...this.pods.values()].map((p) => p.pod),
    };
  }

  // ---- Events ----

  /** A namespace added or relabelled (labels), or deleted (undefined): its pods' identities follow. */
  setNamespace(name: string, labels: Record<string, string> | undefined): void {
    const before = this.namespaces.get(name);
    if (labels === undefined) {
      if (before === undefined) return;
      this.namespaces.delete(name);
    } else {
      this.namespaces.set(name, labels);
      if (before !== undefined && sameLabels(before, labels)) return;
    }
    for (const key of [...(this.podsByNamespace.get(name) ?? [])]) this.refreshPod(key);
  }

  /** A pod added or changed. */
  upsertPod(pod: PolicyPod): void {
    const key = keyOf(pod.namespace, pod.name);
    const record = this.pods.get(key);
    const before = record?.stored;
    if (record && before && samePod(before, pod)) {
      record.stored = pod;
      return;
    }
    this.refreshPod(key, pod);
  }

  /** A pod deleted. */
  deletePod(namespace: string, name: string): void {
    const key = keyOf(namespace, name);
    if (this.pods.get(key)?.stored === undefined) return;
    this.refreshPod(key, null);
  }

  /** A policy added or changed. */
  upsertPolicy(policy: NetworkPolicy): void {
    const key = keyOf(policy.namespace, policy.name);
    const text = this.policyText(policy);
    const before = this.policies.get(key);
    if (before?.text === text) {
      // The same policy in a new object: its peers lead to the same selectors.
      before.policy = policy;
      selectorPeers(policy).forEach((peer, i) => this.selectorOfPeer.set(peer, before.selectors[i]!));
      return;
    }
    if (before) this.dropPolicy(key, before);
    const record: PolicyRecord = { policy, text, selectors: [], namedEgress: (policy.egress ?? []).some((r) => (r.ports ?? []).some(isNamed)) };
    this.countNamedEgressPorts(policy, 1);
    for (const peer of selectorPeers(policy)) {
      const selector = this.acquireSelector(peer, policy.namespace);
      this.selectorOfPeer.set(peer, selector);
      record.selectors.push(selector);
    }
    this.policies.set(key, record);
    let inNamespace = this.policiesByNamespace.get(policy.namespace);
    if (!inNamespace) this.policiesByNamespace.set(policy.namespace, (inNamespace = new Map()));
    inNamespace.set(key, record);
    this.namespaceEndpointsDirty(policy.namespace);
  }

  /** A policy deleted. */
  deletePolicy(namespace: string, name: string): void {
    const key = keyOf(namespace, name);
    const record = this.policies.get(key);
    if (record) this.dropPolicy(key, record);
  }

  /** A local endpoint added or changed (its addresses are authoritative for its pod). */
  upsertEndpoint(ep: LocalEndpoint): void {
    const before = this.endpoints.get(ep.endpointId);
    const podKey = keyOf(ep.namespace, ep.pod);
    if (before && before.podKey === podKey && sameStrings(before.ep.ips, ep.ips)) {
      before.ep = ep;
      return;
    }
    if (before && before.podKey !== podKey) this.unlinkEndpoint(before);
    this.endpoints.set(ep.endpointId, { ep, podKey, compiled: null, selecting: [], selectors: new Set(), podDependent: false });
    this.endpointOfPod.set(podKey, ep.endpointId);
    this.dirty.add(ep.endpointId);
    this.refreshPod(podKey);
  }

  /** A local endpoint gone. */
  deleteEndpoint(endpointId: number): void {
    const record = this.endpoints.get(endpointId);
    if (!record) return;
    this.endpoints.delete(endpointId);
    this.dirty.delete(endpointId);
    this.unlinkEndpoint(record);
  }

  /**
   * Brings the compiler to a whole view of the cluster by the events that
   * separate it from the last one: objects the datastore kept (the same
   * object, or equal content) cost a lookup each.
   */
  applyView(view: ClusterView, local: LocalEndpoint[]): void {
    for (const [name, labels] of view.namespaces) if (this.namespaces.get(name) !== labels) this.setNamespace(name, labels);
    if (this.namespaces.size > view.namespaces.size) for (const name of [...this.namespaces.keys()]) if (!view.namespaces.has(name)) this.setNamespace(name, undefined);

    this.syncEndpoints(local);

    let kept = 0;
    for (const pod of view.pods) {
      const before = this.pods.get(keyOf(pod.namespace, pod.name))?.stored;
      if (before) kept++;
      if (before !== pod) this.upsertPod(pod);
    }
    if (kept < this.storedPods - (view.pods.length - kept)) {
      const present = new Set(view.pods.map((p) => keyOf(p.namespace, p.name)));
      for (const [key, { stored }] of [...this.pods]) if (stored && !present.has(key)) this.deletePod(stored.namespace, stored.name);
    }

    let keptPolicies = 0;
    for (const policy of view.policies) {
      const before = this.policies.get(keyOf(policy.namespace, policy.name));
      if (before) keptPolicies++;
      if (before?.policy !== policy) this.upsertPolicy(policy);
    }
    if (keptPolicies < this.policies.size - (view.policies.length - keptPolicies)) {
      const present = new Set(view.policies.map((p) => keyOf(p.namespace, p.name)));
      for (const [key, record] of [...this.policies]) if (!present.has(key)) this.dropPolicy(key, record);
    }
  }

  /**
   * Applies the datastore's changes since the last view or changes, object
   * by object, and brings the local endpoints to this list (they are this
   * node's, few): the cost is what changed, not the cluster.
   */
  applyChanges(changes: ClusterChanges, local: LocalEndpoint[]): void {
    for (const { name, labels } of changes.namespaces) this.setNamespace(name, labels);
    this.syncEndpoints(local);
    for (const { namespace, name, pod } of changes.pods) {
      if (pod) this.upsertPod(pod);
      else this.deletePod(namespace, name);
    }
    for (const { namespace, name, policy } of changes.policies) {
      if (policy) this.upsertPolicy(policy);
      else this.deletePolicy(namespace, name);
    }
  }

  private syncEndpoints(local: LocalEndpoint[]): void {
    const liveIds = new Set<number>();
    for (const ep of local) {
      liveIds.add(ep.endpointId);
      this.upsertEndpoint(ep);
    }
    if (this.endpoints.size > liveIds.size) for (const id of [...this.endpoints.keys()]) if (!liveIds.has(id)) this.deleteEndpoint(id);
  }

  // ---- Results ----

  /** True when the datastore has the namespace. */
  hasNamespace(name: string): boolean {
    return this.namespaces.has(name);
  }

  /** True when the datastore has the pod (a local endpoint alone does not count). */
  hasPod(namespace: string, name: string): boolean {
    return this.pods.get(keyOf(namespace, name))?.stored !== undefined;
  }

  /** The compiled state, equal to compile() of the same cluster; endpoints not touched since are the same objects. */
  state(): CompiledState {
    this.flush();
    const endpoints = [...this.endpoints.values()].map((r) => r.compiled!);
    const compiler = this;
    return {
      identities: this.identityLabels,
      get ipcache() {
        return compiler.ipcache();
      },
      endpoints,
      selectors: selectorsOf(endpoints),
    };
  }

  /**
   * When c was made from the endpoint's previous compiled object by adding
   * and removing only entries of identities made or dropped (an endpoint
   * that a new or gone label set reached, and nothing else): that previous
   * object and the entries that differ. The sync then writes those, without
   * comparing the endpoints' whole entry lists.
   */
  entryDeltaOf(c: CompiledEndpoint): { from: CompiledEndpoint; delta: EntryDelta } | undefined {
    return this.patches.get(c);
  }

  /** Addresses whose ipcache entry may have changed since the last call (then forgotten). */
  takeIpcacheChanges(): string[] {
    const out = [...this.touchedAddresses];
    this.touchedAddresses.clear();
    return out;
  }

  /** Identities made or dropped since the last call (then forgotten). */
  takeIdentityChanges(): Set<number> {
    const out = new Set(this.identityChanges);
    this.identityChanges.clear();
    return out;
  }

  /** The ipcache entry of an address, or undefined when no pod has it. */
  ipcacheEntry(address: string): IpcacheEntry | undefined {
    const claims = this.claims.get(address);
    if (!claims) return undefined;
    let identity = 0;
    if (claims instanceof Map) for (const id of claims.values()) identity = id; // the last claim
    else identity = claims.identity;
    const v6 = address.includes(':');
    return { family: v6 ? 6 : 4, address, prefixLength: v6 ? 128 : 32, identity };
  }

  /** Every pod address with its identity. */
  ipcache(): IpcacheEntry[] {
    return (this.ipcacheList ??= [...this.claims.keys()].map((a) => this.ipcacheEntry(a)!));
  }

  // ---- Bookkeeping ----

  /**
   * Recompiles the endpoints that what changed reaches. An endpoint reached
   * only because identities came or went (its selectors take other
   * identities, nothing else of it changed) is patched: the entries naming
   * those identities are recomputed, the rest kept, so a new label set costs
   * each endpoint it reaches the rules that take it, not all its peers.
   */
  private flush(): void {
    const patch: EndpointRecord[] = [];
    if (this.changedSelectors.size > 0 || this.podsChanged) {
      for (const [key, rule] of this.rules) {
        if ((this.podsChanged && rule.podDependent) || [...rule.selectors].some((s) => this.changedSelectors.has(s))) this.rules.delete(key);
      }
      for (const [id, record] of this.endpoints) {
        if (this.dirty.has(id)) continue;
        if (this.podsChanged && record.podDependent) this.dirty.add(id);
        else if ([...record.selectors].some((s) => this.changedSelectors.has(s))) {
          if (record.compiled) patch.push(record);
          else this.dirty.add(id);
        }
      }
    }
    this.changedSelectors.clear();
    this.podsChanged = false;
    for (const id of this.dirty) {
      const record = this.endpoints.get(id);
      if (record) this.compileOne(record);
    }
    this.dirty.clear();
    for (const record of patch) this.patchOne(record);
    this.flushIdentities.clear();
  }

  /** Recomputes the entries of one endpoint that name identities made or dropped since the last flush. */
  private patchOne(record: EndpointRecord): void {
    const before = record.compiled!;
    const self = this.pods.get(record.podKey)!.pod;
    const changed = this.flushIdentities;
    const had = new Map<string, CompiledEntry>();
    const kept: CompiledEntry[] = [];
    for (const e of before.entries) {
      if (changed.has(e.peer)) had.set(entryKey(e), e);
      else kept.push(e);
    }
    const now = new Map<string, CompiledEntry>();
    for (const id of changed) {
      const identity = this.identityById.get(id);
      if (!identity) continue; // dropped: its entries go
      const only: RuleSource = {
        peerIdentities: (peer, policyNamespace) => ((this.selectorOfPeer.get(peer)?.matches.has(id) ?? peerTakes(peer, policyNamespace, identity.labels)) ? [identity] : []),
        allPods: () => [],
      };
      for (const policy of record.selecting) {
        for (const direction of ['ingress', 'egress'] as const) {
          if (!isolates(policy, direction)) continue;
          for (const rule of (direction === 'ingress' ? policy.ingress : policy.egress) ?? []) {
            // A rule without peers allows every identity (Identity.ANY): no entry names this one.
            if (((direction === 'ingress' ? rule.from : rule.to) ?? []).length === 0) continue;
            for (const e of compileRule({ direction, policy, rule, self, source: only }).entries) now.set(entryKey(e), e);
          }
        }
      }
    }
    const added = [...now].filter(([k]) => !had.has(k)).map(([, e]) => e);
    const removed = [...had].filter(([k]) => !now.has(k)).map(([, e]) => e);
    if (added.length === 0 && removed.length === 0) return;
    for (const e of now.values()) kept.push(e);
    const after: CompiledEndpoint = { ...before, entries: kept };
    this.patches.set(after, { from: before, delta: { added, removed } });
    record.compiled = after;
    this.recompiled++;
  }

  private compileOne(record: EndpointRecord): void {
    const self = this.pods.get(record.podKey)!;
    const selecting: NetworkPolicy[] = [];
    record.selecting = selecting;
    record.selectors = new Set();
    record.podDependent = false;
    for (const policy of this.policiesByNamespace.get(self.pod.namespace)?.values() ?? []) {
      if (!selectorMatches(policy.policy.podSelector, self.pod.labels)) continue;
      selecting.push(policy.policy);
      for (const s of policy.selectors) record.selectors.add(s);
      record.podDependent ||= policy.namedEgress;
    }
    record.compiled = compileEndpoint(
      record.ep,
      self.identity.id,
      selecting,
      (direction, policy, rule) => this.ruleResult(direction, policy, rule, self.pod),
      this.numbering,
    );
    this.recompiled++;
  }

  /** One rule's result for the endpoint self, from the rule cache when nothing it reads changed. */
  private ruleResult(direction: PolicyDirection, policy: NetworkPolicy, rule: NetworkPolicyRule, self: PolicyPod): RuleResult {
    const policyKey = keyOf(policy.namespace, policy.name);
    const named = (rule.ports ?? []).some(isNamed);
    const index = ((direction === 'ingress' ? policy.ingress : policy.egress) ?? []).indexOf(rule);
    const key = `${policyKey}|${direction}|${index}|${named && direction === 'ingress' ? JSON.stringify(self.ports) : ''}`;
    let cached = this.rules.get(key);
    if (!cached) {
      const peers = (direction === 'ingress' ? rule.from : rule.to) ?? [];
      const selectors = new Set<CachedSelector>();
      for (const peer of peers) {
        const s = peer.ipBlock ? undefined : this.selectorOfPeer.get(peer);
        if (s) selectors.add(s);
      }
      cached = { result: compileRule({ direction, policy, rule, self, source: this.source }), policyKey, selectors, podDependent: named && direction === 'egress' };
      this.rules.set(key, cached);
    }
    return cached.result;
  }

  /** Recomputes one pod as compiled (from the datastore's object and its local endpoint), its identity and addresses. */
  private refreshPod(key: ObjectKey, storedOrGone: PolicyPod | null = this.pods.get(key)?.stored ?? null): void {
    const stored = storedOrGone ?? undefined;
    const endpointId = this.endpointOfPod.get(key);
    const ep = endpointId === undefined ? undefined : this.endpoints.get(endpointId)?.ep;
    let next: PolicyPod | undefined;
    if (stored) next = ep ? { ...stored, ips: ep.ips } : stored;
    else if (ep) next = { namespace: ep.namespace, name: ep.pod, labels: {}, ips: ep.ips, ports: [] };
    const before = this.pods.get(key);
    if (endpointId !== undefined) this.dirty.add(endpointId);
    // Any other pod's change reaches named egress ports only through a port of that name: most pod events recompile nothing for them.
    if (this.namedEgressPorts.size > 0 && (this.hasNamedEgressPort(before?.pod) || this.hasNamedEgressPort(next))) this.podsChanged = true;

    if (before?.stored) this.storedPods--;
    if (stored) this.storedPods++;
    if (!next) {
      if (!before) return;
      this.pods.delete(key);
      this.podsByNamespace.get(before.pod.namespace)?.delete(key);
      for (const ip of before.pod.ips) this.unclaim(ip, key);
      this.releaseIdentity(before.identity, key);
      return;
    }
    const labels: IdentityLabels = { namespace: next.namespace, podLabels: next.labels, namespaceLabels: this.namespaces.get(next.namespace) ?? {} };
    const idKey = identityKey(labels);
    let identity: IdentityEntry;
    if (before && before.identity.key === idKey) {
      identity = before.identity;
      identity.members.set(key, next);
    } else {
      identity = this.acquireIdentity(idKey, labels, key, next);
      if (before) this.releaseIdentity(before.identity, key);
    }
    if (before) for (const ip of before.pod.ips) if (!next.ips.includes(ip) || identity !== before.identity) this.unclaim(ip, key);
    for (const ip of next.ips) if (!before || !before.pod.ips.includes(ip) || identity !== before.identity) this.claim(ip, key, identity.id);
    this.pods.set(key, { stored, pod: next, identity });
    let inNamespace = this.podsByNamespace.get(next.namespace);
    if (!inNamespace) this.podsByNamespace.set(next.namespace, (inNamespace = new Set()));
    inNamespace.add(key);
  }

  private acquireIdentity(idKey: string, labels: IdentityLabels, podKey: ObjectKey, pod: PolicyPod): IdentityEntry {
    let identity = this.identities.get(idKey);
    if (!identity) {
      identity = new IdentityEntry(this.numbering.identity(idKey), idKey, labels);
      this.identities.set(idKey, identity);
      this.identityLabels.set(identity.id, labels);
      this.identityById.set(identity.id, identity);
      this.flushIdentities.add(identity.id);
      this.identityChanges.add(identity.id);
      for (const selector of this.selectors.values()) {
        if (!peerTakes(selector.peer, selector.namespace, labels)) continue;
        selector.matches.set(identity.id, identity);
        this.changedSelectors.add(selector);
      }
    }
    identity.members.set(podKey, pod);
    return identity;
  }

  private releaseIdentity(identity: IdentityEntry, podKey: ObjectKey): void {
    identity.members.delete(podKey);
    if (identity.members.size > 0) return;
    this.identities.delete(identity.key);
    this.identityLabels.delete(identity.id);
    this.identityById.delete(identity.id);
    this.flushIdentities.add(identity.id);
    this.identityChanges.add(identity.id);
    for (const selector of this.selectors.values()) if (selector.matches.delete(identity.id)) this.changedSelectors.add(selector);
  }

  private claim(ip: string, podKey: ObjectKey, identity: number): void {
    const claims = this.claims.get(ip);
    if (!claims || (!(claims instanceof Map) && claims.podKey === podKey)) this.claims.set(ip, { podKey, identity });
    else {
      const all = claims instanceof Map ? claims : new Map([[claims.podKey, claims.identity]]);
      all.delete(podKey);
      all.set(podKey, identity);
      this.claims.set(ip, all);
    }
    this.touchedAddresses.add(ip);
    this.ipcacheList = null;
  }

  private unclaim(ip: string, podKey: ObjectKey): void {
    const claims = this.claims.get(ip);
    if (!claims) return;
    if (claims instanceof Map) {
      if (!claims.delete(podKey)) return;
      if (claims.size === 1) for (const [k, id] of claims) this.claims.set(ip, { podKey: k, identity: id });
    } else {
      if (claims.podKey !== podKey) return;
      this.claims.delete(ip);
    }
    this.touchedAddresses.add(ip);
    this.ipcacheList = null;
  }

  private acquireSelector(peer: NetworkPolicyPeer, policyNamespace: string): CachedSelector {
    const key = JSON.stringify([peer.namespaceSelector ? null : policyNamespace, peer.namespaceSelector ?? null, peer.podSelector ?? {}]);
    let selector = this.selectors.get(key);
    if (!selector) {
      selector = new CachedSelector(key, peer, policyNamespace);
      for (const identity of this.identities.values()) if (peerTakes(peer, policyNamespace, identity.labels)) selector.matches.set(identity.id, identity);
      this.selectors.set(key, selector);
    }
    selector.users++;
    return selector;
  }

  private dropPolicy(key: ObjectKey, record: PolicyRecord): void {
    this.policies.delete(key);
    this.countNamedEgressPorts(record.policy, -1);
    for (const [ruleKey, rule] of this.rules) if (rule.policyKey === key) this.rules.delete(ruleKey);
    this.policiesByNamespace.get(record.policy.namespace)?.delete(key);
    for (const selector of record.selectors) {
      if (--selector.users === 0) this.selectors.delete(selector.key);
    }
    this.namespaceEndpointsDirty(record.policy.namespace);
  }

  /** A policy of the namespace came, changed or went: which of its endpoints it selects is found on their recompile. */
  private namespaceEndpointsDirty(namespace: string): void {
    for (const [id, record] of this.endpoints) if (record.ep.namespace === namespace) this.dirty.add(id);
  }

  private unlinkEndpoint(record: EndpointRecord): void {
    if (this.endpointOfPod.get(record.podKey) === record.ep.endpointId) this.endpointOfPod.delete(record.podKey);
    this.refreshPod(record.podKey);
  }

  private countNamedEgressPorts(policy: NetworkPolicy, by: 1 | -1): void {
    const names = new Set<string>();
    for (const rule of policy.egress ?? []) for (const port of rule.ports ?? []) if (isNamed(port)) names.add(port.port as string);
    for (const name of names) {
      const n = (this.namedEgressPorts.get(name) ?? 0) + by;
      if (n > 0) this.namedEgressPorts.set(name, n);
      else this.namedEgressPorts.delete(name);
    }
  }

  private hasNamedEgressPort(pod: PolicyPod | undefined): boolean {
    return pod !== undefined && pod.ports.some((p) => p.name !== undefined && this.namedEgressPorts.has(p.name));
  }

  private policyText(policy: NetworkPolicy): string {
    let text = this.policyTexts.get(policy);
    if (text === undefined) this.policyTexts.set(policy, (text = JSON.stringify(policy)));
    return text;
  }
}

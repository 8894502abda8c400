/**
 * NetworkPolicy → the datapath's view: an identity per label set, the
 * ipcache, and for each local endpoint its isolation and allow entries. Pure:
 * the same inputs give the same output, and the agent writes only the diff.
 *
 * Semantics (networking.k8s.io/v1):
 * - A pod is isolated in a direction when any policy selecting it has that
 *   direction in its policyTypes; policyTypes defaults to Ingress, plus Egress
 *   when the policy has a non-empty egress list. Rules of every selecting
 *   policy add up.
 * - Peers: podSelector alone stays in the policy's namespace; namespaceSelector
 *   alone takes every pod of the matching namespaces; both together take the
 *   matching pods of the matching namespaces; ipBlock takes addresses (pod
 *   addresses included) minus except. No peers means every peer; no ports
 *   means every port and protocol.
 * - Named ports resolve on the destination pod: for ingress the endpoint
 *   itself, for egress each remote pod (so those become per-address entries),
 *   and the protocol must match the container port's.
 */
import { createHash } from 'node:crypto';
import { cidrContains, parseCidr } from '../lib/cidr.ts';
import { Identity } from '../lib/identity-numbers.ts';
import { Protocol, PROTOCOL_ANY } from '../lib/protocols.ts';
import { addressPrefixes, normalizeIpBlock, type AddressPrefix, type AddressRule } from './address-rules.ts';
import { identityKey, type IdentityLabels, type Numbering } from './identity.ts';
import { portRangePrefixes } from './port-prefixes.ts';
import { selectorMatches } from './selector.ts';
import type { ClusterView, ContainerPort, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule, PolicyPod } from './types.ts';

/** A pod of this node, as the endpoint manager knows it. */
export interface LocalEndpoint {
  endpointId: number;
  namespace: string;
  pod: string;
  /** Authoritative addresses of the endpoint (the datastore may lag behind). */
  ips: string[];
}

/** Which way a policy applies, seen from the endpoint it belongs to (agent/policy-sync/maps.ts turns it into SLUICE_DIR_*). */
export type PolicyDirection = 'ingress' | 'egress';

/**
 * One allow entry of an endpoint's policy (written as struct policy_key): the
 * peer is an identity number (Identity.ANY for every peer) or an address
 * selector, the protocol an IANA number or PROTOCOL_ANY (lib/protocols.ts).
 */
export interface CompiledEntry {
  direction: PolicyDirection;
  peer: number;
  protocol: number;
  port: number;
  portPrefixLength: number;
}

/** One address entry of an endpoint's policy (written as struct cidr_policy_key). */
export interface CompiledCidrEntry {
  direction: PolicyDirection;
  family: 4 | 6;
  address: string;
  prefixLength: number;
  selector: number;
  /** The port specs the selector allows (empty: an except, nothing). */
  ports: string[];
}

/** The compiled policy of one local endpoint. */
export interface CompiledEndpoint {
  endpointId: number;
  identity: number;
  ingressIsolated: boolean;
  egressIsolated: boolean;
  /** Names of the policies selecting the endpoint, ns/name. */
  policies: string[];
  entries: CompiledEntry[];
  cidrEntries: CompiledCidrEntry[];
}

/** An ipcache entry: a pod address and its identity. */
export interface IpcacheEntry {
  family: 4 | 6;
  address: string;
  prefixLength: number;
  identity: number;
}

/** The whole compiled state. */
export interface CompiledState {
  /** Identity number → what it stands for, for every identity in use. */
  identities: Map<number, IdentityLabels>;
  ipcache: IpcacheEntry[];
  endpoints: CompiledEndpoint[];
  /** Address selector → the port specs it allows, for display. */
  selectors: Map<number, string[]>;
}

/** A canonical port spec: '*' (everything), '<proto>:*' or '<proto>:<lo>-<hi>'. */
type PortSpec = string;

const ALL: PortSpec = '*';
/** The selector of an address hole (an except with no rule covering it): allows nothing. */
const NOTHING_SELECTOR = Identity.FIRST_CIDR_SELECTOR;

interface IdentityInfo {
  id: number;
  labels: IdentityLabels;
  pods: PolicyPod[];
}

/** True when the policy isolates the pods it selects in this direction (its policyTypes, or their default). */
export function isolates(policy: NetworkPolicy, direction: PolicyDirection): boolean {
  return policyTypes(policy)[direction];
}

/** The policies that select the pod: its namespace's, with a podSelector matching its labels. */
export function selectingPolicies(pod: PolicyPod, policies: NetworkPolicy[]): NetworkPolicy[] {
  return policies.filter((p) => p.namespace === pod.namespace && selectorMatches(p.podSelector, pod.labels));
}

function policyTypes(p: NetworkPolicy): { ingress: boolean; egress: boolean } {
  if (p.policyTypes && p.policyTypes.length > 0) {
    return { ingress: p.policyTypes.includes('Ingress'), egress: p.policyTypes.includes('Egress') };
  }
  // Omitted: Ingress, plus Egress when there are egress rules (an explicit `egress: []` adds nothing).
  return { ingress: true, egress: (p.egress?.length ?? 0) > 0 };
}

function protocolOf(port: NetworkPolicyPort): number {
  return Protocol[port.protocol ?? 'TCP'];
}

/** Resolves a rule port against a pod's container ports; null when a named port does not resolve. */
function portSpec(port: NetworkPolicyPort, resolveOn: ContainerPort[] | null): PortSpec | null {
  const proto = protocolOf(port);
  if (port.port === undefined) return `${proto}:*`;
  if (typeof port.port === 'number') return `${proto}:${port.port}-${port.endPort ?? port.port}`;
  if (/^\d+$/.test(port.port)) return `${proto}:${port.port}-${port.endPort ?? port.port}`;
  if (!resolveOn) return null;
  const match = resolveOn.find((c) => c.name === port.port && (c.protocol ?? 'TCP') === (port.protocol ?? 'TCP'));
  return match ? `${proto}:${match.containerPort}-${match.containerPort}` : null;
}

export function isNamed(port: NetworkPolicyPort): boolean {
  return typeof port.port === 'string' && !/^\d+$/.test(port.port);
}

/** One entry of a port spec, before a peer is known. */
interface PortTemplate {
  protocol: number;
  port: number;
  portPrefixLength: number;
}

/** Spec → its entries; a spec's expansion never changes, so it is computed once per process. */
const TEMPLATES = new Map<PortSpec, PortTemplate[]>();

function templatesOf(spec: PortSpec): PortTemplate[] {
  let out = TEMPLATES.get(spec);
  if (out) return out;
  if (spec === ALL) {
    out = [{ protocol: PROTOCOL_ANY, port: 0, portPrefixLength: 0 }];
  } else {
    const [proto, range] = spec.split(':') as [string, string];
    if (range === '*') {
      out = [{ protocol: Number(proto), port: 0, portPrefixLength: 0 }];
    } else {
      const [lo, hi] = range.split('-').map(Number) as [number, number];
      out = portRangePrefixes(lo, Math.max(lo, hi)).map((p) => ({ protocol: Number(proto), port: p.port, portPrefixLength: p.prefixLength }));
    }
  }
  TEMPLATES.set(spec, out);
  return out;
}

/** Policy map entries allowing these port specs to one peer. */
function entriesFor(direction: PolicyDirection, peer: number, specs: PortSpec[]): CompiledEntry[] {
  const out: CompiledEntry[] = [];
  for (const spec of specs) for (const t of templatesOf(spec)) out.push({ direction, peer, ...t });
  return out;
}

/** True when a selector peer (ipBlock peers are handled by address) of a policy in policyNamespace takes the identity. */
export function peerTakes(peer: NetworkPolicyPeer, policyNamespace: string, labels: IdentityLabels): boolean {
  if (peer.namespaceSelector) {
    if (!selectorMatches(peer.namespaceSelector, labels.namespaceLabels)) return false;
  } else if (labels.namespace !== policyNamespace) {
    return false;
  }
  return selectorMatches(peer.podSelector ?? {}, labels.podLabels);
}

function hostPrefix(ip: string): string {
  return ip.includes(':') ? `${ip}/128` : `${ip}/32`;
}

/** What one rule allows one endpoint: entries by identity, and rules by address. */
export interface RuleResult {
  entries: CompiledEntry[];
  addressRules: AddressRule[];
}

/** An identity as a rule sees it: its number, labels and pods (named egress ports resolve on the pods). */
export interface PeerIdentity {
  id: number;
  labels: IdentityLabels;
  pods: Iterable<PolicyPod>;
}

/** What a rule reads of the cluster: compile() scans every identity, policy/incremental.ts asks its selector cache. */
export interface RuleSource {
  /** The identities a selector peer (no ipBlock) of a policy in policyNamespace takes. */
  peerIdentities(peer: NetworkPolicyPeer, policyNamespace: string): Iterable<PeerIdentity>;
  /** Every pod of the cluster. */
  allPods(): Iterable<PolicyPod>;
}

export interface RuleContext {
  direction: PolicyDirection;
  policy: NetworkPolicy;
  rule: NetworkPolicyRule;
  self: PolicyPod;
  source: RuleSource;
}

/** What one ingress or egress rule allows the endpoint. */
export function compileRule(ctx: RuleContext): RuleResult {
  const { direction, rule, self } = ctx;
  const result: RuleResult = { entries: [], addressRules: [] };
  const peers = (direction === 'ingress' ? rule.from : rule.to) ?? [];
  const ports = rule.ports ?? [];
  // Named ports on egress resolve per remote pod; everything else resolves here.
  const namedEgress = direction === 'egress' ? ports.filter(isNamed) : [];
  const fixed = ports.filter((p) => !namedEgress.includes(p));
  const specs: PortSpec[] =
    ports.length === 0 ? [ALL] : fixed.map((p) => portSpec(p, self.ports)).filter((s): s is PortSpec => s !== null);

  const namedSpecsFor = (pod: PolicyPod): PortSpec[] =>
    namedEgress.map((p) => portSpec(p, pod.ports)).filter((s): s is PortSpec => s !== null);
  const addNamedFor = (pods: Iterable<PolicyPod>, inBlock?: (ip: string) => boolean) => {
    for (const pod of pods) {
      const named = namedSpecsFor(pod);
      if (named.length === 0) continue;
      for (const ip of pod.ips) if (!inBlock || inBlock(ip)) result.addressRules.push({ cidr: hostPrefix(ip), except: [], ports: named });
    }
  };

  if (peers.length === 0) {
    if (specs.length > 0) result.entries.push(...entriesFor(direction, Identity.ANY, specs));
    addNamedFor(ctx.source.allPods());
    return result;
  }
  for (const peer of peers) {
    if (peer.ipBlock) {
      const ipBlock = normalizeIpBlock(peer.ipBlock);
      if (!ipBlock) continue; // not a CIDR: this peer allows nothing
      if (specs.length > 0) result.addressRules.push({ cidr: ipBlock.cidr, except: ipBlock.except, ports: specs });
      if (namedEgress.length > 0) {
        // Named ports of pods inside the block (and outside its excepts), per pod address.
        const block = addressPrefixes([{ cidr: ipBlock.cidr, except: ipBlock.except, ports: [ALL] }]);
        addNamedFor(ctx.source.allPods(), (ip) => ipInAllowed(ip, block));
      }
      continue;
    }
    const matched = ctx.source.peerIdentities(peer, ctx.policy.namespace);
    for (const id of matched) {
      if (specs.length > 0) result.entries.push(...entriesFor(direction, id.id, specs));
      if (namedEgress.length > 0) addNamedFor(id.pods);
    }
  }
  return result;
}

/**
 * Rule results kept across compiles. A rule's result depends only on the
 * rule, its namespace, the endpoint's named ports (if the rule names ports),
 * the set of identities, and (for egress named ports) every pod's ports: the
 * key holds exactly that, so an unchanged rule is not recompiled when a pod
 * comes or goes with a label set the cluster already has.
 */
export class CompileCache {
  private readonly rules = new Map<string, RuleResult>();
  private endpoints = new Map<string, CompiledEndpoint>();
  private static readonly MAX_RULES = 20_000;

  /** The cached result for key, or the computed one (then cached). */
  get(key: string, compute: () => RuleResult): RuleResult {
    let hit = this.rules.get(key);
    if (!hit) {
      if (this.rules.size >= CompileCache.MAX_RULES) this.rules.clear();
      this.rules.set(key, (hit = compute()));
    }
    return hit;
  }

  /**
   * A whole endpoint's result, reused when nothing it depends on changed (the
   * same object, so the agent can skip re-encoding it). Only the endpoints of
   * the latest compile are kept.
   */
  endpoint(key: string, next: Map<string, CompiledEndpoint>, compute: () => CompiledEndpoint): CompiledEndpoint {
    const hit = this.endpoints.get(key) ?? compute();
    next.set(key, hit);
    return hit;
  }

  /** Ends a compile: endpoints not seen in it are forgotten. */
  finish(next: Map<string, CompiledEndpoint>): void {
    this.endpoints = next;
  }
}

function fingerprint(parts: string[]): string {
  return createHash('sha1').update(parts.join('\n')).digest('hex');
}

/** True when the longest prefix containing ip allows anything (ip is in the block, not in an except). */
function ipInAllowed(ip: string, prefixes: AddressPrefix[]): boolean {
  let best: AddressPrefix | undefined;
  for (const p of prefixes) {
    if (cidrContains(parseCidr(`${p.address}/${p.prefixLength}`), ip) && (!best || p.prefixLength > best.prefixLength)) best = p;
  }
  return best !== undefined && best.ports.length > 0;
}

function dedupe<T>(items: T[], key: (t: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const item of items) seen.set(key(item), item);
  return [...seen.values()];
}

/** Compiles the cluster's policies for the local endpoints. */
export function compile(view: ClusterView, local: LocalEndpoint[], numbering: Numbering, cache = new CompileCache()): CompiledState {
  const run = Compilation.of(view, local, numbering, cache);
  const next = new Map<string, CompiledEndpoint>();
  const endpoints = local.map((ep) => run.endpoint(ep, next));
  cache.finish(next);
  return {
    identities: run.identityLabels(),
    ipcache: run.ipcache(),
    endpoints,
    selectors: selectorsOf(endpoints),
  };
}

/**
 * The cluster's pods as policy sees them: a local endpoint's addresses are
 * authoritative (the datastore may lag behind), and a local endpoint with no
 * pod object still gets one, with no labels, so that it has an identity.
 */
export function podsOf(view: ClusterView, local: LocalEndpoint[]): PolicyPod[] {
  const localByPod = new Map(local.map((ep) => [`${ep.namespace}/${ep.pod}`, ep]));
  const pods: PolicyPod[] = view.pods.map((p) => {
    const ep = localByPod.get(`${p.namespace}/${p.name}`);
    return ep ? { ...p, ips: ep.ips } : p;
  });
  for (const ep of local) {
    if (!pods.some((p) => p.namespace === ep.namespace && p.name === ep.pod)) {
      pods.push({ namespace: ep.namespace, name: ep.pod, labels: {}, ips: ep.ips, ports: [] });
    }
  }
  return pods;
}

/** The pods grouped by identity. */
interface Identities {
  /** Canonical label-set key → its identity, in the order the pods first had it. */
  byKey: Map<string, IdentityInfo>;
  /** Each pod → its identity. */
  ofPod: Map<PolicyPod, IdentityInfo>;
}

/** Gives every pod the identity of its label set; label sets are numbered in pod order. */
function identitiesOf(pods: PolicyPod[], namespaces: ClusterView['namespaces'], numbering: Numbering): Identities {
  const byKey = new Map<string, IdentityInfo>();
  const ofPod = new Map<PolicyPod, IdentityInfo>();
  for (const pod of pods) {
    const labels: IdentityLabels = { namespace: pod.namespace, podLabels: pod.labels, namespaceLabels: namespaces.get(pod.namespace) ?? {} };
    const key = identityKey(labels);
    let info = byKey.get(key);
    if (!info) byKey.set(key, (info = { id: numbering.identity(key), labels, pods: [] }));
    info.pods.push(pod);
    ofPod.set(pod, info);
  }
  return { byKey, ofPod };
}

/** Every pod address with its pod's identity, one entry per address. */
function ipcacheOf(pods: PolicyPod[], identities: Identities): IpcacheEntry[] {
  return dedupe(
    pods.flatMap((pod) =>
      pod.ips.map((ip) => ({ family: (ip.includes(':') ? 6 : 4) as 4 | 6, address: ip, prefixLength: ip.includes(':') ? 128 : 32, identity: identities.ofPod.get(pod)!.id })),
    ),
    (e) => e.address,
  );
}

/** Address selector → its port specs. Selector numbers are stable per port set, so any endpoint's entries can name them. */
export function selectorsOf(endpoints: CompiledEndpoint[]): Map<number, string[]> {
  const selectors = new Map<number, string[]>();
  for (const c of endpoints) for (const a of c.cidrEntries) selectors.set(a.selector, a.ports);
  return selectors;
}

/** What one direction of an endpoint's policy comes to. */
interface DirectionResult {
  isolated: boolean;
  entries: CompiledEntry[];
  cidrEntries: CompiledCidrEntry[];
}

/** What one rule, or a whole direction, allows an endpoint: entries as compile() writes them. */
export type CompiledRules = Pick<CompiledEndpoint, 'entries' | 'cidrEntries'>;

/** A rule's result for the endpoint being compiled (from a cache, or computed). */
export type RuleResultOf = (direction: PolicyDirection, policy: NetworkPolicy, rule: NetworkPolicyRule) => RuleResult;

/**
 * One endpoint's compiled policy from the policies selecting it: the one
 * place both compile() and the incremental compiler add rules up.
 */
export function compileEndpoint(ep: LocalEndpoint, identity: number, selecting: NetworkPolicy[], ruleResult: RuleResultOf, numbering: Numbering): CompiledEndpoint {
  const ingress = compileDirection('ingress', selecting, ruleResult, numbering);
  const egress = compileDirection('egress', selecting, ruleResult, numbering);
  const entries = [...ingress.entries, ...egress.entries];
  return {
    endpointId: ep.endpointId,
    identity,
    ingressIsolated: ingress.isolated,
    egressIsolated: egress.isolated,
    policies: selecting.map((p) => `${p.namespace}/${p.name}`),
    entries: dedupe(entries, (e) => `${e.direction}/${e.peer}/${e.protocol}/${e.port}/${e.portPrefixLength}`),
    cidrEntries: [...ingress.cidrEntries, ...egress.cidrEntries],
  };
}

/** The rules of every selecting policy that isolates the endpoint in this direction, added up. */
function compileDirection(direction: PolicyDirection, selecting: NetworkPolicy[], ruleResult: RuleResultOf, numbering: Numbering): DirectionResult {
  const out: DirectionResult = { isolated: false, entries: [], cidrEntries: [] };
  const addressRules: AddressRule[] = [];
  for (const policy of selecting) {
    if (!isolates(policy, direction)) continue;
    out.isolated = true;
    for (const rule of (direction === 'ingress' ? policy.ingress : policy.egress) ?? []) {
      const result = ruleResult(direction, policy, rule);
      for (const e of result.entries) out.entries.push(e);
      for (const a of result.addressRules) addressRules.push(a);
    }
  }
  addAddressEntries(out, direction, addressRules, numbering);
  return out;
}

/** The address rules as non-overlapping prefixes, each with the selector of its port set and that selector's entries. */
function addAddressEntries(out: DirectionResult, direction: PolicyDirection, addressRules: AddressRule[], numbering: Numbering): void {
  for (const prefix of addressPrefixes(addressRules)) {
    let selector = NOTHING_SELECTOR;
    if (prefix.ports.length > 0) {
      selector = numbering.selector(prefix.ports.join(','));
      out.entries.push(...entriesFor(direction, selector, prefix.ports));
    }
    out.cidrEntries.push({ direction, family: prefix.family, address: prefix.address, prefixLength: prefix.prefixLength, selector, ports: prefix.ports });
  }
}

/**
 * One run of compile() over its pods and identities: compiles each local
 * endpoint through the cache, and makes the fingerprints the cache keys hold
 * at most once per run. policy/explain.ts asks the same run about one pod or
 * one rule, so that one logic decides both the entries and their explanation.
 */
export class Compilation {
  private readonly policies: NetworkPolicy[];
  private readonly pods: PolicyPod[];
  private readonly identities: Identities;
  /** What rules read: every identity scanned, every pod. */
  private readonly source: RuleSource;
  private readonly numbering: Numbering;
  private readonly cache: CompileCache;
  /** Fingerprint of every identity and its label set. */
  private readonly identityPrint: string;
  /** Fingerprint of every pod's addresses and ports, made when a key first needs it. */
  private podsPrintMemo: string | undefined;
  private readonly ruleTexts = new WeakMap<NetworkPolicyRule, string>();
  private readonly policyTexts = new Map<NetworkPolicy, string>();

  /** A run over the view's pods (local endpoints' addresses authoritative), numbering their label sets. */
  static of(view: ClusterView, local: LocalEndpoint[], numbering: Numbering, cache = new CompileCache()): Compilation {
    const pods = podsOf(view, local);
    return new Compilation(view.policies, pods, identitiesOf(pods, view.namespaces, numbering), numbering, cache);
  }

  private constructor(policies: NetworkPolicy[], pods: PolicyPod[], identities: Identities, numbering: Numbering, cache: CompileCache) {
    this.policies = policies;
    this.pods = pods;
    this.identities = identities;
    const identityList = [...identities.byKey.values()];
    this.source = {
      peerIdentities: (peer, policyNamespace) => identityList.filter((i) => peerTakes(peer, policyNamespace, i.labels)),
      allPods: () => pods,
    };
    this.numbering = numbering;
    this.cache = cache;
    this.identityPrint = fingerprint([...identities.byKey.entries()].map(([key, info]) => `${info.id}=${key}`));
  }

  /** Identity number → what it stands for, for every identity of the run. */
  identityLabels(): Map<number, IdentityLabels> {
    return new Map([...this.identities.byKey.values()].map((i) => [i.id, i.labels]));
  }

  /** Every pod address with its pod's identity. */
  ipcache(): IpcacheEntry[] {
    return ipcacheOf(this.pods, this.identities);
  }

  /** The pod as policy sees it (a local endpoint's addresses), or undefined. */
  pod(namespace: string, name: string): PolicyPod | undefined {
    return this.pods.find((p) => p.namespace === namespace && p.name === name);
  }

  /** The pod that has this address, or undefined. */
  podWithAddress(ip: string): PolicyPod | undefined {
    return this.pods.find((p) => p.ips.includes(ip));
  }

  /** The identity of one of the run's pods. */
  identityOf(pod: PolicyPod): number {
    return this.identities.ofPod.get(pod)!.id;
  }

  /** The policies selecting one of the run's pods. */
  selecting(pod: PolicyPod): NetworkPolicy[] {
    return selectingPolicies(pod, this.policies);
  }

  /** One of the run's pods compiled as if it were a local endpoint (any pod: its own node compiles it the same way). */
  compilePod(pod: PolicyPod, endpointId = 0): CompiledEndpoint {
    return this.compileEndpoint({ endpointId, namespace: pod.namespace, pod: pod.name, ips: pod.ips }, pod, this.selecting(pod));
  }

  /**
   * What one rule alone allows one of the run's pods: the entries compile()
   * adds up with the other rules of the direction (the provenance of an entry).
   */
  ruleEntries(direction: PolicyDirection, policy: NetworkPolicy, rule: NetworkPolicyRule, pod: PolicyPod): CompiledRules {
    const out: DirectionResult = { isolated: true, entries: [], cidrEntries: [] };
    const result = compileRule({ direction, policy, rule, self: pod, source: this.source });
    out.entries.push(...result.entries);
    addAddressEntries(out, direction, result.addressRules, this.numbering);
    return out;
  }

  /** A local endpoint's compiled policy: the cached one when nothing it depends on changed (recorded in next). */
  endpoint(ep: LocalEndpoint, next: Map<string, CompiledEndpoint>): CompiledEndpoint {
    const self = this.pods.find((p) => p.namespace === ep.namespace && p.name === ep.pod)!;
    const selecting = this.selecting(self);
    const namedEgress = selecting.some((p) => (p.egress ?? []).some((r) => (r.ports ?? []).some(isNamed)));
    const key = [
      ep.endpointId,
      JSON.stringify([self.namespace, self.labels, self.ports]),
      selecting.map((p) => this.policyText(p)).join('\n'),
      this.identityPrint,
      namedEgress ? this.podsPrint() : '',
    ].join('|');
    return this.cache.endpoint(key, next, () => this.compileEndpoint(ep, self, selecting));
  }

  private compileEndpoint(ep: LocalEndpoint, self: PolicyPod, selecting: NetworkPolicy[]): CompiledEndpoint {
    return compileEndpoint(ep, this.identities.ofPod.get(self)!.id, selecting, (direction, policy, rule) => this.ruleResult(direction, policy, rule, self), this.numbering);
  }

  /** One rule's result, from the cache when the rule and everything it depends on are unchanged (see CompileCache). */
  private ruleResult(direction: PolicyDirection, policy: NetworkPolicy, rule: NetworkPolicyRule, self: PolicyPod): RuleResult {
    const named = (rule.ports ?? []).some(isNamed);
    const key = [
      direction,
      policy.namespace,
      this.ruleText(rule),
      named && direction === 'ingress' ? JSON.stringify(self.ports) : '',
      this.identityPrint,
      named && direction === 'egress' ? this.podsPrint() : '',
    ].join('|');
    return this.cache.get(key, () => compileRule({ direction, policy, rule, self, source: this.source }));
  }

  private podsPrint(): string {
    return (this.podsPrintMemo ??= fingerprint(this.pods.map((p) => `${p.namespace}/${p.name}=${p.ips.join(',')}:${JSON.stringify(p.ports)}`)));
  }

  private ruleText(rule: NetworkPolicyRule): string {
    let text = this.ruleTexts.get(rule);
    if (text === undefined) this.ruleTexts.set(rule, (text = JSON.stringify(rule)));
    return text;
  }

  private policyText(policy: NetworkPolicy): string {
    let text = this.policyTexts.get(policy);
    if (text === undefined) this.policyTexts.set(policy, (text = JSON.stringify(policy)));
    return text;
  }
}

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
import { Direction, Identity, PROTO_ANY } from '../datapath/abi.ts';
import { cidrContains, parseCidr } from '../ipam/cidr.ts';
import { addressPrefixes, type AddressPrefix, type AddressRule } from './address-rules.ts';
import { identityKey, type IdentityLabels, type Numbering } from './identity.ts';
import { portRangePrefixes } from './port-prefixes.ts';
import { selectorMatches } from './selector.ts';
import type { ClusterView, ContainerPort, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule, PolicyPod } from './types.ts';

/** IANA protocol numbers of the protocols NetworkPolicy knows. */
export const PROTOCOL_NUMBERS = { TCP: 6, UDP: 17, SCTP: 132 } as const;

/** A pod of this node, as the endpoint manager knows it. */
export interface LocalEndpoint {
  endpointId: number;
  namespace: string;
  pod: string;
  /** Authoritative addresses of the endpoint (the datastore may lag behind). */
  ips: string[];
}

/** One allow entry of an endpoint's policy (see struct policy_key). */
export interface CompiledEntry {
  direction: number;
  peer: number;
  protocol: number;
  port: number;
  portPrefixLength: number;
}

/** One address entry of an endpoint's policy (see struct cidr_policy_key). */
export interface CompiledCidrEntry {
  direction: number;
  family: 4 | 6;
  address: string;
  prefixLength: number;
  selector: number;
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

function policyTypes(p: NetworkPolicy): { ingress: boolean; egress: boolean } {
  if (p.policyTypes && p.policyTypes.length > 0) {
    return { ingress: p.policyTypes.includes('Ingress'), egress: p.policyTypes.includes('Egress') };
  }
  // Omitted: Ingress, plus Egress when there are egress rules (an explicit `egress: []` adds nothing).
  return { ingress: true, egress: (p.egress?.length ?? 0) > 0 };
}

function protocolOf(port: NetworkPolicyPort): number {
  return PROTOCOL_NUMBERS[port.protocol ?? 'TCP'];
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

function isNamed(port: NetworkPolicyPort): boolean {
  return typeof port.port === 'string' && !/^\d+$/.test(port.port);
}

/** Policy map entries allowing these port specs to one peer. */
function entriesFor(direction: number, peer: number, specs: PortSpec[]): CompiledEntry[] {
  const out: CompiledEntry[] = [];
  for (const spec of specs) {
    if (spec === ALL) {
      out.push({ direction, peer, protocol: PROTO_ANY, port: 0, portPrefixLength: 0 });
      continue;
    }
    const [proto, range] = spec.split(':') as [string, string];
    if (range === '*') {
      out.push({ direction, peer, protocol: Number(proto), port: 0, portPrefixLength: 0 });
      continue;
    }
    const [lo, hi] = range.split('-').map(Number) as [number, number];
    for (const p of portRangePrefixes(lo, Math.max(lo, hi))) {
      out.push({ direction, peer, protocol: Number(proto), port: p.port, portPrefixLength: p.prefixLength });
    }
  }
  return out;
}

/** Identities a selector peer takes (ipBlock peers are handled by address). */
function peerIdentities(peer: NetworkPolicyPeer, policyNamespace: string, identities: IdentityInfo[]): IdentityInfo[] {
  return identities.filter(({ labels }) => {
    if (peer.namespaceSelector) {
      if (!selectorMatches(peer.namespaceSelector, labels.namespaceLabels)) return false;
    } else if (labels.namespace !== policyNamespace) {
      return false;
    }
    return selectorMatches(peer.podSelector ?? {}, labels.podLabels);
  });
}

function hostPrefix(ip: string): string {
  return ip.includes(':') ? `${ip}/128` : `${ip}/32`;
}

interface RuleContext {
  direction: number;
  policy: NetworkPolicy;
  rule: NetworkPolicyRule;
  self: PolicyPod;
  identities: IdentityInfo[];
  allPods: PolicyPod[];
  entries: CompiledEntry[];
  addressRules: AddressRule[];
}

/** Adds what one ingress or egress rule allows to the endpoint's entries and address rules. */
function compileRule(ctx: RuleContext): void {
  const { direction, rule, self } = ctx;
  const peers = (direction === Direction.INGRESS ? rule.from : rule.to) ?? [];
  const ports = rule.ports ?? [];
  // Named ports on egress resolve per remote pod; everything else resolves here.
  const namedEgress = direction === Direction.EGRESS ? ports.filter(isNamed) : [];
  const fixed = ports.filter((p) => !namedEgress.includes(p));
  const specs: PortSpec[] =
    ports.length === 0 ? [ALL] : fixed.map((p) => portSpec(p, self.ports)).filter((s): s is PortSpec => s !== null);

  const namedSpecsFor = (pod: PolicyPod): PortSpec[] =>
    namedEgress.map((p) => portSpec(p, pod.ports)).filter((s): s is PortSpec => s !== null);
  const addNamedFor = (pods: PolicyPod[], inBlock?: (ip: string) => boolean) => {
    for (const pod of pods) {
      const named = namedSpecsFor(pod);
      if (named.length === 0) continue;
      for (const ip of pod.ips) if (!inBlock || inBlock(ip)) ctx.addressRules.push({ cidr: hostPrefix(ip), except: [], ports: named });
    }
  };

  if (peers.length === 0) {
    if (specs.length > 0) ctx.entries.push(...entriesFor(direction, Identity.ANY, specs));
    addNamedFor(ctx.allPods);
    return;
  }
  for (const peer of peers) {
    if (peer.ipBlock) {
      if (specs.length > 0) ctx.addressRules.push({ cidr: peer.ipBlock.cidr, except: peer.ipBlock.except ?? [], ports: specs });
      if (namedEgress.length > 0) {
        // Named ports of pods inside the block (and outside its excepts), per pod address.
        const block = addressPrefixes([{ cidr: peer.ipBlock.cidr, except: peer.ipBlock.except ?? [], ports: [ALL] }]);
        addNamedFor(ctx.allPods, (ip) => ipInAllowed(ip, block));
      }
      continue;
    }
    const matched = peerIdentities(peer, ctx.policy.namespace, ctx.identities);
    if (specs.length > 0) for (const id of matched) ctx.entries.push(...entriesFor(direction, id.id, specs));
    if (namedEgress.length > 0) addNamedFor(matched.flatMap((id) => id.pods));
  }
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
export function compile(view: ClusterView, local: LocalEndpoint[], numbering: Numbering): CompiledState {
  const localByPod = new Map(local.map((ep) => [`${ep.namespace}/${ep.pod}`, ep]));
  // Local endpoints' addresses are authoritative; a local endpoint with no pod object still gets an identity.
  const pods: PolicyPod[] = view.pods.map((p) => {
    const ep = localByPod.get(`${p.namespace}/${p.name}`);
    return ep ? { ...p, ips: ep.ips } : p;
  });
  for (const ep of local) {
    if (!pods.some((p) => p.namespace === ep.namespace && p.name === ep.pod)) {
      pods.push({ namespace: ep.namespace, name: ep.pod, labels: {}, ips: ep.ips, ports: [] });
    }
  }

  const byKey = new Map<string, IdentityInfo>();
  const podIdentity = new Map<PolicyPod, IdentityInfo>();
  for (const pod of pods) {
    const labels: IdentityLabels = { namespace: pod.namespace, podLabels: pod.labels, namespaceLabels: view.namespaces.get(pod.namespace) ?? {} };
    const key = identityKey(labels);
    let info = byKey.get(key);
    if (!info) byKey.set(key, (info = { id: numbering.identity(key), labels, pods: [] }));
    info.pods.push(pod);
    podIdentity.set(pod, info);
  }
  const identities = [...byKey.values()];

  const ipcache: IpcacheEntry[] = dedupe(
    pods.flatMap((pod) =>
      pod.ips.map((ip) => ({ family: (ip.includes(':') ? 6 : 4) as 4 | 6, address: ip, prefixLength: ip.includes(':') ? 128 : 32, identity: podIdentity.get(pod)!.id })),
    ),
    (e) => e.address,
  );

  const selectors = new Map<number, string[]>();
  const endpoints: CompiledEndpoint[] = [];
  for (const ep of local) {
    const self = pods.find((p) => p.namespace === ep.namespace && p.name === ep.pod)!;
    const selecting = view.policies.filter((p) => p.namespace === self.namespace && selectorMatches(p.podSelector, self.labels));
    let ingressIsolated = false;
    let egressIsolated = false;
    const entries: CompiledEntry[] = [];
    const cidrEntries: CompiledCidrEntry[] = [];
    for (const [direction, isIngress] of [
      [Direction.INGRESS, true],
      [Direction.EGRESS, false],
    ] as const) {
      const addressRules: AddressRule[] = [];
      for (const policy of selecting) {
        const types = policyTypes(policy);
        if (isIngress ? !types.ingress : !types.egress) continue;
        if (isIngress) ingressIsolated = true;
        else egressIsolated = true;
        for (const rule of (isIngress ? policy.ingress : policy.egress) ?? []) {
          compileRule({ direction, policy, rule, self, identities, allPods: pods, entries, addressRules });
        }
      }
      for (const prefix of addressPrefixes(addressRules)) {
        let selector = NOTHING_SELECTOR;
        if (prefix.ports.length > 0) {
          selector = numbering.selector(prefix.ports.join(','));
          selectors.set(selector, prefix.ports);
          entries.push(...entriesFor(direction, selector, prefix.ports));
        }
        cidrEntries.push({ direction, family: prefix.family, address: prefix.address, prefixLength: prefix.prefixLength, selector });
      }
    }
    endpoints.push({
      endpointId: ep.endpointId,
      identity: podIdentity.get(self)!.id,
      ingressIsolated,
      egressIsolated,
      policies: selecting.map((p) => `${p.namespace}/${p.name}`),
      entries: dedupe(entries, (e) => `${e.direction}/${e.peer}/${e.protocol}/${e.port}/${e.portPrefixLength}`),
      cidrEntries,
    });
  }
  return { identities: new Map(identities.map((i) => [i.id, i.labels])), ipcache, endpoints, selectors };
}

/**
 * Why a flow is allowed or denied: for the source pod's egress and the
 * destination pod's ingress, the policies that isolate the pod, and the rule
 * (policy, direction, index, peer, port) that lets the flow through, or that
 * none does. Pure.
 *
 * No second reading of the spec: the verdict of each direction is the one
 * the datapath reaches on the entries compile() makes for the pod
 * (Compilation.compilePod, looked up as bpf/policy.h does, policy/lookup.ts),
 * and the provenance comes from the same compiler asked about one rule at a
 * time (Compilation.ruleEntries), or about one peer or one port of a rule.
 * compile() adds the rules of a direction up, so the rules that allow a flow
 * are exactly those whose own entries allow it; a disagreement is reported
 * as a warning (it would be a bug of the compiler).
 */
import { cidrContains, parseCidr } from '../lib/cidr.ts';
import { Identity } from '../lib/identity-numbers.ts';
import { Protocol } from '../lib/protocols.ts';
import { Compilation, isolates, type CompiledState, type LocalEndpoint, type PolicyDirection } from './compile.ts';
import { MemoryNumbering } from './identity.ts';
import { policyAllows } from './lookup.ts';
import { isNotCompiledRule, isNotCompiledSelector } from './policy-check.ts';
import { podsWithUnknownLabels, UNKNOWN_LABELS_REASON } from './unknown-labels.ts';
import type { ClusterView, LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule, PolicyPod } from './types.ts';

/** A transport protocol as NetworkPolicy names it. */
export type PolicyProtocol = 'TCP' | 'UDP' | 'SCTP';

/** The protocols explain takes. */
export const POLICY_PROTOCOLS: readonly PolicyProtocol[] = ['TCP', 'UDP', 'SCTP'];

/** The flow to explain: a new connection from a pod to a pod or an address. */
export interface FlowQuery {
  /** The source: a pod "namespace/name", or an address (a pod's address is that pod; any other is judged by the destination's ingress only). */
  from: string;
  /** The destination: a pod "namespace/name", or an address (a pod's address is that pod). */
  to: string;
  port: number;
  protocol: PolicyProtocol;
  /** Which address family of two pods to use (default: IPv4 when both have one). */
  family?: 4 | 6;
}

/** Addresses that are no pod's, named as the agent's ipcache names them. */
export interface AddressNames {
  /** This node's own addresses (identity host). */
  host?: string[];
  /** The nodes' InternalIPs (identity remote-node). */
  nodes?: string[];
  /** The Service (ClusterIP) ranges (identity service). */
  serviceCidrs?: string[];
}

/** What else explainFlow needs to know of the node it answers for. */
export interface ExplainOptions {
  /** This node's endpoints: their addresses are authoritative, and their directions are marked local. */
  local?: LocalEndpoint[];
  addresses?: AddressNames;
  /**
   * The compilation to answer from (explainCompilation of the same view and
   * local endpoints): a caller that explains many flows of one revision
   * (the flow records) builds it once, instead of once per flow.
   */
  compilation?: Compilation;
}

/** What an address is: a pod, this node, another node, a Service address, or the world. */
export type EndKind = 'pod' | 'host' | 'remote-node' | 'service' | 'world';

/** One end of the flow. */
export interface FlowEnd {
  /** "namespace/name" when the address is a pod's; null otherwise. */
  pod: string | null;
  ip: string;
  kind: EndKind;
  /** The pod's labels (pods only). */
  labels?: Record<string, string>;
}

/** A rule that allows the flow, and the first of its peers and of its ports that match it. */
export interface RuleMatch {
  /** "namespace/name" of the NetworkPolicy. */
  policy: string;
  direction: PolicyDirection;
  /** Index of the rule in the policy's ingress (or egress) list, from 0. */
  rule: number;
  /** The matching peer as text ("any peer" when the rule has none). */
  peer: string;
  /** Its index in the rule's from (or to) list; null when the rule has no peers. */
  peerIndex: number | null;
  /** The matching port as text ("any port" when the rule has none). */
  port: string;
  /** Its index in the rule's ports; null when the rule has no ports. */
  portIndex: number | null;
}

/** A rule of an isolating policy that does not allow the flow, and which half of it fails. */
export interface RuleMiss {
  policy: string;
  direction: PolicyDirection;
  rule: number;
  /** True when one of its peers takes the far end (on some port). */
  peerMatches: boolean;
  /** True when one of its ports takes the flow's protocol and port (from some peer). */
  portMatches: boolean;
  /** Set when the rule could not be read and allows nothing: why (its problems), or '' when the caller has not said. */
  notCompiled?: string;
}

/** The judgement of one direction: the source pod's egress, or the destination pod's ingress. */
export interface DirectionVerdict {
  direction: PolicyDirection;
  /** The pod whose policy judges ("namespace/name"); null when that end is no pod. */
  pod: string | null;
  /** False when this direction does not judge the flow at all (see reason); allowed is then true. */
  judged: boolean;
  /** True when a policy selects the pod for this direction. */
  isolated: boolean;
  allowed: boolean;
  /** The policies selecting the pod that isolate it in this direction ("namespace/name"). */
  policies: string[];
  /** Every rule that allows the flow, in policy and rule order; the first is the answer to "why". */
  allowedBy: RuleMatch[];
  /** When denied: every rule of the isolating policies, with what of it does not match. */
  notMatched: RuleMiss[];
  /** True when the pod is an endpoint of the node that answers (ExplainOptions.local). */
  local: boolean;
  /** One sentence people read. */
  reason: string;
}

/** Whether a flow is allowed, and why, for each direction that judges it. */
export interface FlowExplanation {
  from: FlowEnd;
  to: FlowEnd;
  protocol: PolicyProtocol;
  port: number;
  /** True when both directions allow the flow. */
  allowed: boolean;
  egress: DirectionVerdict;
  ingress: DirectionVerdict;
  /** Anything that makes the answer less certain (empty normally). */
  warnings: string[];
}

/** Thrown for a query that names no known pod, or cannot be made (no address of the family). */
export class ExplainQueryError extends Error {}

function podRef(p: PolicyPod): string {
  return `${p.namespace}/${p.name}`;
}

function familyOf(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

function splitRef(ref: string): { namespace: string; name: string } | null {
  const parts = ref.split('/');
  return parts.length === 2 && parts[0] && parts[1] ? { namespace: parts[0], name: parts[1] } : null;
}

function isAddress(text: string): boolean {
  return /^[0-9.]+$/.test(text) || text.includes(':');
}

/** A label selector as people write it: "pod=a,tier in (x,y),!team"; "" for the empty one. */
export function selectorText(s: LabelSelector): string {
  const parts = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const r of s.matchExpressions ?? []) {
    if (r.operator === 'In') parts.push(`${r.key} in (${(r.values ?? []).join(',')})`);
    else if (r.operator === 'NotIn') parts.push(`${r.key} notin (${(r.values ?? []).join(',')})`);
    else if (r.operator === 'Exists') parts.push(r.key);
    else if (r.operator === 'DoesNotExist') parts.push(`!${r.key}`);
    else parts.push(`${r.key} ${String(r.operator)}`);
  }
  return parts.join(',');
}

/** A rule's peer as people read it. */
export function peerText(peer: NetworkPolicyPeer, policyNamespace: string): string {
  if (isNotCompiledSelector(peer.podSelector)) return 'rule not compiled';
  if (peer.ipBlock) return `ipBlock ${peer.ipBlock.cidr}${peer.ipBlock.except?.length ? ` except ${peer.ipBlock.except.join(',')}` : ''}`;
  const pods = peer.podSelector && selectorText(peer.podSelector) ? `pods {${selectorText(peer.podSelector)}}` : 'every pod';
  if (!peer.namespaceSelector) return `${pods} of namespace ${policyNamespace}`;
  const nss = selectorText(peer.namespaceSelector);
  return `${pods} of ${nss ? `namespaces {${nss}}` : 'every namespace'}`;
}

/** A rule's port as people read it: "TCP/80", "TCP/80-90", "UDP/dns", "SCTP (every port)". */
export function portText(port: NetworkPolicyPort): string {
  const proto = port.protocol ?? 'TCP';
  if (port.port === undefined) return `${proto} (every port)`;
  return `${proto}/${port.port}${port.endPort !== undefined ? `-${port.endPort}` : ''}`;
}

/** The rule with only these peers and ports (undefined: none, i.e. every peer or every port). */
function narrowed(direction: PolicyDirection, peers: NetworkPolicyPeer[] | undefined, ports: NetworkPolicyPort[] | undefined): NetworkPolicyRule {
  const out: NetworkPolicyRule = {};
  if (peers) out[direction === 'ingress' ? 'from' : 'to'] = peers;
  if (ports) out.ports = ports;
  return out;
}

function rulesOf(policy: NetworkPolicy, direction: PolicyDirection): NetworkPolicyRule[] {
  return (direction === 'ingress' ? policy.ingress : policy.egress) ?? [];
}

function peersOf(rule: NetworkPolicyRule, direction: PolicyDirection): NetworkPolicyPeer[] {
  return (direction === 'ingress' ? rule.from : rule.to) ?? [];
}

/** The far end of one direction, as the datapath sees it: its address and identity. */
interface Peer {
  ip: string;
  identity: number;
}

/**
 * One direction of a pod's policy on a flow with peer: the verdict on the
 * pod's compiled entries, and the rules that allow it (or all that do not).
 */
function judge(run: Compilation, pod: PolicyPod, direction: PolicyDirection, peer: Peer, protocol: number, port: number, flowText: string, local: boolean, warnings: string[], labelsUnknown = false): DirectionVerdict {
  if (labelsUnknown) return { direction, pod: podRef(pod), judged: true, local, policies: [], isolated: true, allowed: false, allowedBy: [], notMatched: [], reason: UNKNOWN_LABELS_REASON };
  const selecting = run.selecting(pod);
  const isolating = selecting.filter((p) => isolates(p, direction));
  const base = { direction, pod: podRef(pod), judged: true, local, policies: isolating.map((p) => `${p.namespace}/${p.name}`) };
  if (isolating.length === 0) {
    const other = selecting.length > 0 ? ` (${selecting.map((p) => `${p.namespace}/${p.name}`).join(', ')} select${selecting.length === 1 ? 's' : ''} it for ${direction === 'ingress' ? 'egress' : 'ingress'} only)` : '';
    return { ...base, isolated: false, allowed: true, allowedBy: [], notMatched: [], reason: `not isolated: no policy selects the pod for ${direction}${other}` };
  }
  const compiled = run.compilePod(pod);
  const allowed = policyAllows(compiled, direction, peer.ip, peer.identity, protocol, port);
  const allows = (rule: NetworkPolicyRule, policy: NetworkPolicy) => policyAllows(run.ruleEntries(direction, policy, rule, pod), direction, peer.ip, peer.identity, protocol, port);

  const allowedBy: RuleMatch[] = [];
  const notMatched: RuleMiss[] = [];
  for (const policy of isolating) {
    const name = `${policy.namespace}/${policy.name}`;
    rulesOf(policy, direction).forEach((rule, index) => {
      const peers = peersOf(rule, direction);
      const ports = rule.ports ?? [];
      if (allows(rule, policy)) {
        // The first peer that lets the flow through with the rule's ports, and the first port with the rule's peers.
        const peerIndex = peers.length === 0 ? null : peers.findIndex((p) => allows(narrowed(direction, [p], rule.ports), policy));
        const portIndex = ports.length === 0 ? null : ports.findIndex((p) => allows(narrowed(direction, peers.length ? peers : undefined, [p]), policy));
        allowedBy.push({
          policy: name,
          direction,
          rule: index,
          peer: peerIndex === null ? 'any peer' : peerIndex >= 0 ? peerText(peers[peerIndex]!, policy.namespace) : '?',
          peerIndex: peerIndex !== null && peerIndex < 0 ? null : peerIndex,
          port: portIndex === null ? 'any port' : portIndex >= 0 ? portText(ports[portIndex]!) : '?',
          portIndex: portIndex !== null && portIndex < 0 ? null : portIndex,
        });
      } else {
        notMatched.push({
          policy: name,
          direction,
          rule: index,
          peerMatches: allows(narrowed(direction, peers.length ? peers : undefined, undefined), policy),
          portMatches: allows(narrowed(direction, undefined, ports.length ? ports : undefined), policy),
          ...(isNotCompiledRule(rule) ? { notCompiled: '' } : {}),
        });
      }
    });
  }
  if (allowed !== allowedBy.length > 0) {
    warnings.push(`${direction} of ${podRef(pod)}: the compiled entries say ${allowed ? 'allowed' : 'denied'}, yet ${allowedBy.length} rule(s) allow the flow on their own`);
  }
  const isolatedBy = base.policies.join(', ');
  let reason: string;
  if (allowed && allowedBy.length > 0) {
    const m = allowedBy[0]!;
    reason = `allowed by ${m.policy} ${direction} rule ${m.rule} (peer: ${m.peer}; port: ${m.port})`;
  } else if (allowed) {
    reason = `allowed (isolated by ${isolatedBy})`;
  } else {
    const count = notMatched.length;
    reason =
      count === 0
        ? `denied: isolated by ${isolatedBy}, which ${isolating.length === 1 ? 'has' : 'have'} no ${direction} rules`
        : count === 1
          ? `denied: isolated by ${isolatedBy}; ${isolating.length === 1 ? 'its' : 'their'} only ${direction} rule does not allow ${flowText}`
          : `denied: isolated by ${isolatedBy}; none of ${isolating.length === 1 ? 'its' : 'their'} ${count} ${direction} rules allows ${flowText}`;
  }
  return { ...base, isolated: true, allowed, allowedBy: allowed ? allowedBy : [], notMatched: allowed ? [] : notMatched, reason };
}

function notJudged(direction: PolicyDirection, pod: string | null, local: boolean, reason: string): DirectionVerdict {
  return { direction, pod, judged: false, isolated: false, allowed: true, policies: [], allowedBy: [], notMatched: [], local, reason };
}

function inAny(ip: string, prefixes: string[]): boolean {
  return prefixes.some((p) => {
    try {
      return p.includes('/') ? cidrContains(parseCidr(p), ip) : p === ip;
    } catch {
      return false;
    }
  });
}

/** The reserved identity the datapath gives an address of each kind that is no pod's. */
export const KIND_IDENTITY: Readonly<Record<Exclude<EndKind, 'pod'>, number>> = {
  host: Identity.HOST,
  'remote-node': Identity.REMOTE_NODE,
  service: Identity.SERVICE,
  world: Identity.WORLD,
};

/** What a non-pod address is, in the order the agent's ipcache resolves it (longest prefix: host and node addresses before Service ranges). */
function addressKind(ip: string, names: AddressNames): { kind: EndKind; identity: number } {
  const kind: Exclude<EndKind, 'pod'> = inAny(ip, names.host ?? [])
    ? 'host'
    : inAny(ip, names.nodes ?? [])
      ? 'remote-node'
      : inAny(ip, names.serviceCidrs ?? [])
        ? 'service'
        : 'world';
  return { kind, identity: KIND_IDENTITY[kind] };
}

function podAddress(pod: PolicyPod, family: 4 | 6): string | undefined {
  return pod.ips.find((ip) => familyOf(ip) === family);
}

/** What explainFlow answers from: the cluster's pods, identities and policies, compiled on demand per pod. */
export function explainCompilation(view: ClusterView, local: LocalEndpoint[] = []): Compilation {
  return Compilation.of(view, local, new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1));
}

/**
 * Explains a new flow from a pod to a pod or an address, from the cluster's
 * objects: each direction that judges it, its verdict, and the policy and
 * rule behind it. Throws ExplainQueryError for a pod the view does not hold or
 * an address family an end lacks.
 */
export function explainFlow(view: ClusterView, query: FlowQuery, options: ExplainOptions = {}): FlowExplanation {
  const local = options.local ?? [];
  const run = options.compilation ?? explainCompilation(view, local);
  const isLocal = (p: PolicyPod | undefined) => p !== undefined && local.some((ep) => ep.namespace === p.namespace && ep.pod === p.name);
  const unknownLabels = podsWithUnknownLabels(view, local);
  const findPod = (ref: string): PolicyPod => {
    const r = splitRef(ref);
    if (!r) throw new ExplainQueryError(`'${ref}' is not namespace/pod`);
    const pod = run.pod(r.namespace, r.name);
    if (!pod) throw new ExplainQueryError(`no pod ${ref} in the datastore`);
    if (pod.ips.length === 0) throw new ExplainQueryError(`pod ${ref} has no address yet`);
    return pod;
  };
  if (!Number.isInteger(query.port) || query.port < 1 || query.port > 0xffff) throw new ExplainQueryError(`port ${query.port} is not 1-65535`);
  if (!POLICY_PROTOCOLS.includes(query.protocol)) throw new ExplainQueryError(`protocol ${String(query.protocol)} is not TCP, UDP or SCTP`);

  if (isAddress(query.from)) {
    const pod = run.podWithAddress(query.from);
    if (!pod) return explainFromAddress(run, query, options, findPod, isLocal, unknownLabels);
    query = { ...query, from: podRef(pod) };
  }
  const src = findPod(query.from);
  let dst: PolicyPod | undefined;
  let dstIp: string;
  if (isAddress(query.to)) {
    dstIp = query.to;
    try {
      parseCidr(`${dstIp}/${familyOf(dstIp) === 4 ? 32 : 128}`);
    } catch {
      throw new ExplainQueryError(`'${query.to}' is neither namespace/pod nor an address`);
    }
    dst = run.podWithAddress(dstIp);
  } else {
    dst = findPod(query.to);
    const family = query.family ?? ([4, 6] as const).find((f) => podAddress(src, f) && podAddress(dst!, f));
    if (!family || !podAddress(dst, family)) throw new ExplainQueryError(`${query.to} has no ${query.family ? `IPv${query.family} ` : ''}address that ${query.from} can reach${query.family ? '' : ' (no common family)'}`);
    dstIp = podAddress(dst, family)!;
  }
  const srcIp = podAddress(src, familyOf(dstIp));
  if (!srcIp) throw new ExplainQueryError(`${query.from} has no IPv${familyOf(dstIp)} address`);

  const protocol = Protocol[query.protocol];
  const to: FlowEnd = dst ? { pod: podRef(dst), ip: dstIp, kind: 'pod', labels: dst.labels } : { pod: null, ip: dstIp, kind: addressKind(dstIp, options.addresses ?? {}).kind };
  const from: FlowEnd = { pod: podRef(src), ip: srcIp, kind: 'pod', labels: src.labels };
  const flowText = `${query.protocol}/${query.port}`;
  const warnings: string[] = [];

  let egress: DirectionVerdict;
  let ingress: DirectionVerdict;
  if (dst === src) {
    const why = 'a pod reaches itself inside its own network namespace: no policy applies';
    egress = notJudged('egress', from.pod, isLocal(src), why);
    ingress = notJudged('ingress', from.pod, isLocal(src), why);
  } else {
    const dstIdentity = dst ? run.identityOf(dst) : addressKind(dstIp, options.addresses ?? {}).identity;
    egress =
      dstIdentity === Identity.SERVICE
        ? notJudged('egress', from.pod, isLocal(src), 'the destination is a Service address: the egress policy judges the backend the Service translation picks (explain a backend pod instead)')
        : judge(run, src, 'egress', { ip: dstIp, identity: dstIdentity }, protocol, query.port, `${flowText} to ${to.pod ?? dstIp}`, isLocal(src), warnings, unknownLabels.has(podRef(src)));
    ingress = dst
      ? judge(run, dst, 'ingress', { ip: srcIp, identity: run.identityOf(src) }, protocol, query.port, `${flowText} from ${from.pod}`, isLocal(dst), warnings, unknownLabels.has(podRef(dst)))
      : notJudged('ingress', null, false, `the destination is no pod (${to.kind}): no ingress policy applies`);
  }
  return { from, to, protocol: query.protocol, port: query.port, allowed: egress.allowed && ingress.allowed, egress, ingress, warnings };
}

/**
 * A new flow from an address that is no pod's (this node, another node, the
 * world) to a pod: only the pod's ingress judges it, with the address's
 * reserved identity, as the datapath does.
 */
function explainFromAddress(
  run: Compilation,
  query: FlowQuery,
  options: ExplainOptions,
  findPod: (ref: string) => PolicyPod,
  isLocal: (p: PolicyPod | undefined) => boolean,
  unknownLabels: ReadonlySet<string>,
): FlowExplanation {
  const srcIp = query.from;
  try {
    parseCidr(`${srcIp}/${familyOf(srcIp) === 4 ? 32 : 128}`);
  } catch {
    throw new ExplainQueryError(`'${query.from}' is neither namespace/pod nor an address`);
  }
  const dst = isAddress(query.to) ? run.podWithAddress(query.to) : findPod(query.to);
  if (!dst) throw new ExplainQueryError(`from an address, the destination must be a pod: ${query.to} is none`);
  const dstIp = isAddress(query.to) ? query.to : podAddress(dst, familyOf(srcIp));
  if (!dstIp) throw new ExplainQueryError(`${query.to} has no IPv${familyOf(srcIp)} address`);
  const source = addressKind(srcIp, options.addresses ?? {});
  const from: FlowEnd = { pod: null, ip: srcIp, kind: source.kind };
  const to: FlowEnd = { pod: podRef(dst), ip: dstIp, kind: 'pod', labels: dst.labels };
  const warnings: string[] = [];
  const flowText = `${query.protocol}/${query.port} from ${srcIp}`;
  const egress = notJudged('egress', null, false, `the source is no pod (${source.kind}): no egress policy applies`);
  const ingress = judge(run, dst, 'ingress', { ip: srcIp, identity: source.identity }, Protocol[query.protocol], query.port, flowText, isLocal(dst), warnings, unknownLabels.has(podRef(dst)) && source.kind !== 'host');
  return { from, to, protocol: query.protocol, port: query.port, allowed: ingress.allowed, egress, ingress, warnings };
}

/**
 * The verdict of compiled state (what a node wrote to its maps) on one
 * direction of one of its endpoints: true when the direction is not isolated
 * or allows the flow. A pod peer's identity comes from the state's ipcache;
 * any other peer has nonPodIdentity (a reserved one). Undefined when the
 * state has no such endpoint.
 */
export function compiledVerdict(
  state: CompiledState,
  endpointId: number,
  direction: PolicyDirection,
  peerIp: string,
  nonPodIdentity: number,
  protocol: PolicyProtocol,
  port: number,
): boolean | undefined {
  const ep = state.endpoints.find((e) => e.endpointId === endpointId);
  if (!ep) return undefined;
  if (!(direction === 'ingress' ? ep.ingressIsolated : ep.egressIsolated)) return true;
  const identity = state.ipcache.find((e) => e.address === peerIp)?.identity ?? nonPodIdentity;
  return policyAllows(ep, direction, peerIp, identity, Protocol[protocol], port);
}

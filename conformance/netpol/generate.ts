/**
 * The generative mode's inputs: random valid NetworkPolicy sets (and a few
 * pod and namespace relabels) over the model, reproducible from a seed and an
 * iteration number. Valid means what the API server would accept: endPort only
 * with a numeric port and not below it, excepts inside their block.
 */
import type { CaseContext } from './case.ts';
import { CONTAINER_PORTS, NAMESPACES, POD_NAMES, PODS, baseNamespaceLabels, namespaceManifest, podManifest } from './model.ts';
import { Random } from './random.ts';
import type {
  ObjectRef,
  EgressRule,
  IngressRule,
  LabelSelector,
  LabelSelectorRequirement,
  Manifest,
  NetworkPolicy,
  NetworkPolicyPeer,
  NetworkPolicyPort,
  NetworkPolicySpec,
} from './types.ts';

/** A change made on top of a generated set: the incremental path of the agent. */
export interface Mutation {
  apply: Manifest[];
  delete: ObjectRef[];
  /** What the change does, for the report. */
  summary: string[];
}

/** What one generated iteration applies. */
export interface Generated {
  /** Pod and namespace relabels, applied before the policies. */
  relabels: Manifest[];
  policies: NetworkPolicy[];
}

const TIERS = ['front', 'back'];
const TEAMS = ['blue', 'red'];

function podSelector(rnd: Random): LabelSelector {
  const roll = rnd.int(0, 9);
  if (roll <= 2) return {};
  if (roll <= 4) return { matchLabels: { pod: rnd.pick(POD_NAMES) } };
  if (roll === 5) return { matchLabels: { tier: rnd.pick(TIERS) } };
  const req: LabelSelectorRequirement =
    roll === 6
      ? { key: 'pod', operator: 'In', values: rnd.some(POD_NAMES, 2) }
      : roll === 7
        ? { key: 'pod', operator: 'NotIn', values: rnd.some(POD_NAMES, 2) }
        : roll === 8
          ? { key: 'tier', operator: rnd.pick(['Exists', 'DoesNotExist'] as const) }
          : { key: 'tier', operator: 'NotIn', values: [rnd.pick(TIERS)] };
  return rnd.chance(0.3) ? { matchLabels: { pod: rnd.pick(POD_NAMES) }, matchExpressions: [req] } : { matchExpressions: [req] };
}

function namespaceSelector(rnd: Random): LabelSelector {
  const roll = rnd.int(0, 7);
  if (roll <= 1) return {};
  if (roll === 2) return { matchLabels: { ns: rnd.pick(NAMESPACES) } };
  if (roll === 3) return { matchLabels: { 'kubernetes.io/metadata.name': rnd.pick(NAMESPACES) } };
  if (roll === 4) return { matchLabels: { team: rnd.pick(TEAMS) } };
  if (roll === 5) return { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: rnd.pick(['In', 'NotIn'] as const), values: rnd.some(NAMESPACES, 2) }] };
  if (roll === 6) return { matchExpressions: [{ key: 'team', operator: rnd.pick(['Exists', 'DoesNotExist'] as const) }] };
  return { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: rnd.some(NAMESPACES, 2) }] };
}

function ipBlockPeer(rnd: Random, ctx: CaseContext): NetworkPolicyPeer {
  const host = (pod: string) => `${ctx.ip(pod)}/32`;
  const roll = rnd.int(0, 3);
  if (roll === 0) return { ipBlock: { cidr: host(rnd.pick(PODS)) } };
  if (roll === 1) return { ipBlock: { cidr: ctx.podCIDR } };
  const except = rnd.some(PODS, 3).map(host);
  if (roll === 2) return { ipBlock: { cidr: ctx.podCIDR, except } };
  return { ipBlock: { cidr: '0.0.0.0/0', except: rnd.chance(0.5) ? [ctx.podCIDR] : except } };
}

function peer(rnd: Random, ctx: CaseContext): NetworkPolicyPeer {
  const roll = rnd.int(0, 9);
  if (roll <= 2) return { podSelector: podSelector(rnd) };
  if (roll <= 4) return { namespaceSelector: namespaceSelector(rnd) };
  if (roll <= 7) return { namespaceSelector: namespaceSelector(rnd), podSelector: podSelector(rnd) };
  return ipBlockPeer(rnd, ctx);
}

function port(rnd: Random): NetworkPolicyPort {
  const protocol = rnd.pick(['TCP', 'UDP', 'TCP', 'UDP', 'SCTP', undefined] as const);
  const withProtocol = (p: NetworkPolicyPort): NetworkPolicyPort => (protocol ? { protocol, ...p } : p);
  const roll = rnd.int(0, 9);
  if (roll <= 1) return withProtocol({});
  if (roll <= 4) return withProtocol({ port: rnd.pick([80, 81]) });
  if (roll <= 6) {
    // Named ports of the model, of either protocol, or a name no pod has.
    return withProtocol({ port: rnd.chance(0.85) ? rnd.pick(CONTAINER_PORTS).name : 'serve-82-tcp' });
  }
  if (roll === 7) return withProtocol({ port: rnd.pick([80, 81]), endPort: 81 });
  const lo = rnd.pick([1, 79, 81]);
  return withProtocol({ port: lo, endPort: rnd.pick([lo, 80, 81, 1000].filter((h) => h >= lo)) });
}

function rule(rnd: Random, ctx: CaseContext): { peers?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] } {
  const out: { peers?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] } = {};
  if (!rnd.chance(0.25)) out.peers = Array.from({ length: rnd.int(1, 2) }, () => peer(rnd, ctx));
  if (!rnd.chance(0.4)) out.ports = Array.from({ length: rnd.int(1, 2) }, () => port(rnd));
  return out;
}

function ingressRules(rnd: Random, ctx: CaseContext): IngressRule[] {
  return Array.from({ length: rnd.int(0, 2) }, () => {
    const r = rule(rnd, ctx);
    return { ...(r.peers ? { from: r.peers } : {}), ...(r.ports ? { ports: r.ports } : {}) };
  });
}

function egressRules(rnd: Random, ctx: CaseContext): EgressRule[] {
  return Array.from({ length: rnd.int(0, 2) }, () => {
    const r = rule(rnd, ctx);
    return { ...(r.peers ? { to: r.peers } : {}), ...(r.ports ? { ports: r.ports } : {}) };
  });
}

function policySpec(rnd: Random, ctx: CaseContext): NetworkPolicySpec {
  const choices: (('Ingress' | 'Egress')[] | undefined)[] = [undefined, ['Ingress'], ['Egress'], ['Ingress', 'Egress'], ['Ingress', 'Egress']];
  const types = rnd.pick(choices);
  const spec: NetworkPolicySpec = { podSelector: podSelector(rnd) };
  if (types) spec.policyTypes = [...types];
  // Rules of a direction the policy does not isolate are written now and then: they must be ignored.
  const wantIngress = !types || types.includes('Ingress') || rnd.chance(0.15);
  const wantEgress = (types ? types.includes('Egress') : rnd.chance(0.5)) || rnd.chance(0.15);
  if (wantIngress) spec.ingress = ingressRules(rnd, ctx);
  if (wantEgress) spec.egress = egressRules(rnd, ctx);
  return spec;
}

function relabels(rnd: Random): Manifest[] {
  const out: Manifest[] = [];
  if (rnd.chance(0.4)) {
    for (const ref of rnd.some(PODS, 3)) out.push(podManifest(ref, { pod: ref.split('/')[1]!, tier: rnd.pick(TIERS) }));
  }
  if (rnd.chance(0.3)) {
    for (const ns of rnd.some(NAMESPACES, 2)) out.push(namespaceManifest(ns, { ...baseNamespaceLabels(ns), team: rnd.pick(TEAMS) }));
  }
  return out;
}

/** The policies and relabels of iteration i of the run seeded `seed`. */
export function generate(seed: number, i: number, ctx: CaseContext): Generated {
  const rnd = Random.forIteration(seed, i);
  const count = rnd.int(1, 4);
  const policies = Array.from({ length: count }, (_, k): NetworkPolicy => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: `gen-${k}`, namespace: rnd.pick(NAMESPACES) },
    spec: policySpec(rnd, ctx),
  }));
  return { relabels: relabels(rnd), policies };
}

/** A random change to iteration i's set: policies replaced, added or deleted, pods and namespaces relabelled. */
export function mutate(seed: number, i: number, ctx: CaseContext, g: Generated): Mutation {
  // A stream of its own, so the change does not depend on how much of the first stream generate() used.
  const rnd = Random.forIteration(seed ^ 0x5bd1e995, i);
  const out: Mutation = { apply: [], delete: [], summary: [] };
  const n = rnd.int(1, 3);
  for (let k = 0; k < n; k++) {
    const roll = rnd.int(0, 9);
    const target = rnd.pick(g.policies);
    if (roll <= 3) {
      out.apply.push({ ...target, spec: policySpec(rnd, ctx) });
      out.summary.push(`replace ${target.metadata.namespace}/${target.metadata.name}`);
    } else if (roll <= 5 && g.policies.length > 1 && !out.delete.some((d) => d.name === target.metadata.name && d.namespace === target.metadata.namespace)) {
      out.delete.push({ kind: 'NetworkPolicy', namespace: target.metadata.namespace, name: target.metadata.name });
      out.summary.push(`delete ${target.metadata.namespace}/${target.metadata.name}`);
    } else if (roll <= 7) {
      const name = `gen-m${k}`;
      out.apply.push({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: rnd.pick(NAMESPACES) }, spec: policySpec(rnd, ctx) });
      out.summary.push(`add ${name}`);
    } else {
      const changed = relabels(rnd);
      const pod = rnd.pick(PODS);
      // Relabel, or put a pod back to its base labels.
      out.apply.push(...(changed.length > 0 ? changed : [podManifest(pod)]));
      out.summary.push(changed.length > 0 ? `relabel ${changed.map((m) => `${m.kind === 'Pod' ? `${m.metadata.namespace}/` : 'ns '}${m.metadata.name}`).join(', ')}` : `base labels for ${pod}`);
    }
  }
  // A deleted policy cannot also be replaced in the same change.
  out.apply = out.apply.filter((m) => !(m.kind === 'NetworkPolicy' && out.delete.some((d) => d.name === m.metadata.name && d.namespace === m.metadata.namespace)));
  return out;
}

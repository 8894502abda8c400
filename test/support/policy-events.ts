/**
 * Random cluster events for the incremental policy compiler's tests: a
 * seeded generator of pods, namespaces, policies and local endpoints, and the
 * cluster they make (test/policy-incremental.test.ts,
 * test/datapath-sync-incremental.test.ts).
 */
import type { LocalEndpoint } from '../../policy/compile.ts';
import type { IncrementalCompiler } from '../../policy/incremental.ts';
import type { ClusterView, ContainerPort, LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule, PolicyPod } from '../../policy/types.ts';

/** mulberry32: small, seeded, good enough to pick events. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const NAMESPACES = ['ns-a', 'ns-b', 'ns-c'];
const PODS_PER_NAMESPACE = 6;
/** Pods that are local endpoints when they come up (id = index + 1). */
export const LOCAL_PODS = ['ns-a/p0', 'ns-a/p1', 'ns-b/p0', 'ns-b/p3', 'ns-c/p2'];

export class Gen {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = rng(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }

  labels(): Record<string, string> {
    const out: Record<string, string> = {};
    if (this.chance(0.8)) out.app = this.pick(['web', 'db', 'api']);
    if (this.chance(0.5)) out.tier = this.pick(['fe', 'be']);
    return out;
  }

  namespaceLabels(): Record<string, string> {
    const out: Record<string, string> = {};
    if (this.chance(0.7)) out.team = this.pick(['x', 'y']);
    if (this.chance(0.4)) out.env = this.pick(['prod', 'dev']);
    return out;
  }

  ports(): ContainerPort[] {
    const out: ContainerPort[] = [];
    if (this.chance(0.5)) out.push({ name: 'http', containerPort: this.pick([80, 8080]) });
    if (this.chance(0.3)) out.push({ name: 'dns', containerPort: 53, protocol: 'UDP' });
    return out;
  }

  selector(): LabelSelector {
    switch (this.int(4)) {
      case 0:
        return {};
      case 1:
        return { matchLabels: { app: this.pick(['web', 'db', 'api']) } };
      case 2:
        return { matchExpressions: [{ key: 'tier', operator: this.pick(['In', 'NotIn'] as const), values: [this.pick(['fe', 'be'])] }] };
      default:
        return { matchExpressions: [{ key: this.pick(['app', 'tier']), operator: this.pick(['Exists', 'DoesNotExist'] as const) }] };
    }
  }

  namespaceSelector(): LabelSelector {
    return this.chance(0.3) ? {} : { matchLabels: this.chance(0.5) ? { team: this.pick(['x', 'y']) } : { env: this.pick(['prod', 'dev']) } };
  }

  peer(): NetworkPolicyPeer {
    switch (this.int(5)) {
      case 0:
        return { podSelector: this.selector() };
      case 1:
        return { namespaceSelector: this.namespaceSelector() };
      case 2:
        return { namespaceSelector: this.namespaceSelector(), podSelector: this.selector() };
      case 3:
        return { ipBlock: { cidr: '10.1.0.0/16', except: this.chance(0.5) ? ['10.1.1.0/24'] : [] } };
      default:
        return { podSelector: this.selector() };
    }
  }

  port(): NetworkPolicyPort {
    switch (this.int(5)) {
      case 0:
        return { port: this.pick([80, 443, 8080]) };
      case 1:
        return { protocol: 'TCP', port: 8000, endPort: 8100 };
      case 2:
        return { port: 'http' };
      case 3:
        return { protocol: 'UDP', port: 'dns' };
      default:
        return { protocol: 'UDP' };
    }
  }

  rule(direction: 'from' | 'to'): NetworkPolicyRule {
    const rule: NetworkPolicyRule = {};
    if (this.chance(0.8)) rule[direction] = Array.from({ length: 1 + this.int(2) }, () => this.peer());
    if (this.chance(0.7)) rule.ports = Array.from({ length: 1 + this.int(2) }, () => this.port());
    return rule;
  }

  policy(namespace: string, name: string): NetworkPolicy {
    const policy: NetworkPolicy = { namespace, name, podSelector: this.selector() };
    if (this.chance(0.8)) policy.ingress = Array.from({ length: this.int(3) }, () => this.rule('from'));
    if (this.chance(0.5)) policy.egress = Array.from({ length: this.int(3) }, () => this.rule('to'));
    if (this.chance(0.4)) policy.policyTypes = this.pick([['Ingress'], ['Egress'], ['Ingress', 'Egress']] as const).slice();
    return policy;
  }
}

/** The cluster as the test holds it, and the events that change it. */
export class Cluster {
  readonly namespaces = new Map<string, Record<string, string>>();
  readonly pods = new Map<string, PolicyPod>();
  readonly policies = new Map<string, NetworkPolicy>();
  readonly local = new Map<number, LocalEndpoint>();

  view(): ClusterView {
    return { namespaces: new Map(this.namespaces), pods: [...this.pods.values()], policies: [...this.policies.values()] };
  }
  localList(): LocalEndpoint[] {
    return [...this.local.values()].sort((a, b) => a.endpointId - b.endpointId);
  }
}

/** Every pod's addresses are its own: address conflicts are the one place the two compilers differ on purpose. */
function addressesOf(namespace: string, name: string, variant: number): string[] {
  const n = NAMESPACES.indexOf(namespace) + 1;
  const i = Number(name.slice(1)) + 1;
  if (variant === 0) return [`10.1.${n}.${i}`];
  if (variant === 1) return [`10.1.${n}.${i}`, `fd00::${n}:${i}`];
  if (variant === 2) return [`10.1.${n}.${i + 100}`];
  return [];
}

/** One random event, applied to the cluster and the compiler; returns its description. */
export function randomEvent(g: Gen, cluster: Cluster, inc?: IncrementalCompiler): string {
  const namespace = g.pick(NAMESPACES);
  const podName = `p${g.int(PODS_PER_NAMESPACE)}`;
  const podKey = `${namespace}/${podName}`;
  const kind = g.int(10);
  if (kind <= 2) {
    const before = cluster.pods.get(podKey);
    const pod: PolicyPod = {
      namespace,
      name: podName,
      labels: before && g.chance(0.3) ? before.labels : g.labels(),
      ips: before && g.chance(0.7) ? before.ips : addressesOf(namespace, podName, g.int(4)),
      ports: before && g.chance(0.7) ? before.ports : g.ports(),
    };
    cluster.pods.set(podKey, pod);
    inc?.upsertPod(pod);
    return `${before ? 'change' : 'add'} pod ${podKey} ${JSON.stringify(pod.labels)} ${pod.ips.join(',')}`;
  }
  if (kind === 3) {
    cluster.pods.delete(podKey);
    inc?.deletePod(namespace, podName);
    return `delete pod ${podKey}`;
  }
  if (kind === 4) {
    if (g.chance(0.15)) {
      cluster.namespaces.delete(namespace);
      inc?.setNamespace(namespace, undefined);
      return `delete namespace ${namespace}`;
    }
    const labels = g.namespaceLabels();
    cluster.namespaces.set(namespace, labels);
    inc?.setNamespace(namespace, labels);
    return `label namespace ${namespace} ${JSON.stringify(labels)}`;
  }
  if (kind <= 7) {
    const policy = g.policy(namespace, `pol${g.int(4)}`);
    cluster.policies.set(`${namespace}/${policy.name}`, policy);
    inc?.upsertPolicy(policy);
    return `set policy ${namespace}/${policy.name} ${JSON.stringify(policy)}`;
  }
  if (kind === 8) {
    const name = `pol${g.int(4)}`;
    cluster.policies.delete(`${namespace}/${name}`);
    inc?.deletePolicy(namespace, name);
    return `delete policy ${namespace}/${name}`;
  }
  const index = g.int(LOCAL_PODS.length);
  const [epNamespace, epPod] = LOCAL_PODS[index]!.split('/') as [string, string];
  const endpointId = index + 1;
  if (cluster.local.has(endpointId) && g.chance(0.4)) {
    cluster.local.delete(endpointId);
    inc?.deleteEndpoint(endpointId);
    return `endpoint ${endpointId} gone`;
  }
  const ep: LocalEndpoint = { endpointId, namespace: epNamespace, pod: epPod, ips: addressesOf(epNamespace, epPod, g.int(2)) };
  cluster.local.set(endpointId, ep);
  inc?.upsertEndpoint(ep);
  return `endpoint ${endpointId} for ${epNamespace}/${epPod} at ${ep.ips.join(',')}`;
}


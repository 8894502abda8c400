/**
 * explainFlow: the verdict of each direction and the policy, rule, peer and
 * port behind it. Hand-written cases state the answers people read; the
 * generated ones hold every answer, down to each rule, against the
 * NetworkPolicy suite's reference evaluator (an independent reading of the
 * spec) and against the datapath's lookup over compile()'s entries.
 */
import { describe, expect, it } from 'vitest';
import type { CaseContext } from '../conformance/netpol/case.ts';
import { generate, mutate } from '../conformance/netpol/generate.ts';
import { COMBOS, PODS as MODEL_PODS, baseState, parseCombo, type ClusterState } from '../conformance/netpol/model.ts';
import { sideAllows, type Connection } from '../conformance/netpol/reference-evaluator.ts';
import { recordApply, recordDelete } from '../conformance/netpol/state-changes.ts';
import type { NetworkPolicy as ModelPolicy } from '../conformance/netpol/types.ts';
import { Identity } from '../lib/identity-numbers.ts';
import { Protocol } from '../lib/protocols.ts';
import { compile, type LocalEndpoint } from '../policy/compile.ts';
import { ExplainQueryError, compiledVerdict, explainFlow, type DirectionVerdict, type FlowQuery } from '../policy/explain.ts';
import { MemoryNumbering } from '../policy/identity.ts';
import type { ClusterView, NetworkPolicy, PolicyPod } from '../policy/types.ts';
import { flowAllowed } from './support/policy-lookup.ts';
import { explain as explainRoute, type ExplainRouteContext } from '../agent/api/explain-route.ts';
import { clusterView as clusterViewOf, type ClusterObjects } from '../agent/datastore/cluster-view.ts';
import type { KubeObject } from '../agent/datastore/local.ts';
import type { Endpoint } from '../contract/api-types.ts';
import { renderExplanation } from '../cli/explain.ts';

// A small cluster: namespaces x and y, pods a and b in each, serving TCP 80 and UDP 81 under names.
function pod(namespace: string, name: string, ip: string, labels: Record<string, string> = { pod: name }): PolicyPod {
  return {
    namespace,
    name,
    labels,
    ips: [ip],
    ports: [
      { name: 'serve-80-tcp', containerPort: 80, protocol: 'TCP' },
      { name: 'serve-81-udp', containerPort: 81, protocol: 'UDP' },
    ],
  };
}
const PODS = [pod('x', 'a', '10.0.0.1'), pod('x', 'b', '10.0.0.2'), pod('y', 'a', '10.0.1.1'), pod('y', 'b', '10.0.1.2')];
const NAMESPACES = new Map([
  ['x', { ns: 'x', 'kubernetes.io/metadata.name': 'x' }],
  ['y', { ns: 'y', 'kubernetes.io/metadata.name': 'y' }],
]);

function view(policies: (Partial<NetworkPolicy> & { name?: string })[]): ClusterView {
  return { namespaces: NAMESPACES, pods: PODS, policies: policies.map((p, i) => ({ namespace: 'x', name: `p${i}`, podSelector: {}, ...p })) };
}

function explain(policies: Partial<NetworkPolicy>[], from: string, to: string, port = 80, protocol: FlowQuery['protocol'] = 'TCP') {
  return explainFlow(view(policies), { from, to, port, protocol }, { addresses: { host: ['192.168.1.10'], nodes: ['192.168.1.11'], serviceCidrs: ['10.96.0.0/12'] } });
}

const B_ONLY = { podSelector: { matchLabels: { pod: 'b' } } };

describe('explain: unisolated and isolated directions', () => {
  it('with no policy both directions say they are not isolated', () => {
    const e = explain([], 'x/a', 'y/b');
    expect(e.allowed).toBe(true);
    expect(e.egress).toMatchObject({ judged: true, isolated: false, allowed: true, pod: 'x/a', reason: 'not isolated: no policy selects the pod for egress' });
    expect(e.ingress).toMatchObject({ judged: true, isolated: false, allowed: true, pod: 'y/b', reason: 'not isolated: no policy selects the pod for ingress' });
    expect(e.from).toMatchObject({ pod: 'x/a', ip: '10.0.0.1', kind: 'pod' });
    expect(e.to).toMatchObject({ pod: 'y/b', ip: '10.0.1.2', kind: 'pod' });
    expect(e.warnings).toEqual([]);
  });

  it('a policy that selects the pod for ingress only is named on the egress side, which stays open', () => {
    const e = explain([{ podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Ingress'] }], 'x/a', 'x/b');
    expect(e.egress.isolated).toBe(false);
    expect(e.egress.reason).toBe('not isolated: no policy selects the pod for egress (x/p0 selects it for ingress only)');
  });

  it('an allowed flow names the policy, the direction, the rule index, and the peer and port that matched', () => {
    const e = explain(
      [
        { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'zzz' } } }] }] },
        {
          podSelector: { matchLabels: { pod: 'a' } },
          ingress: [
            { from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 81, protocol: 'UDP' }] },
            { from: [{ ipBlock: { cidr: '10.9.0.0/16' } }, B_ONLY], ports: [{ port: 'serve-81-udp', protocol: 'UDP' }, { port: 'serve-80-tcp' }] },
          ],
        },
      ],
      'x/b',
      'x/a',
    );
    expect(e.allowed).toBe(true);
    expect(e.ingress.policies).toEqual(['x/p0', 'x/p1']);
    expect(e.ingress.allowedBy).toEqual([
      { policy: 'x/p1', direction: 'ingress', rule: 1, peer: 'pods {pod=b} of namespace x', peerIndex: 1, port: 'TCP/serve-80-tcp', portIndex: 1 },
    ]);
    expect(e.ingress.reason).toBe('allowed by x/p1 ingress rule 1 (peer: pods {pod=b} of namespace x; port: TCP/serve-80-tcp)');
  });

  it('every rule that allows is listed, the first one gives the reason; rules without peers or ports say any', () => {
    const e = explain([{ egress: [{ ports: [{ port: 80 }] }, { to: [{ namespaceSelector: {} }] }] }], 'x/a', 'y/b');
    expect(e.egress.allowedBy.map((m) => [m.rule, m.peer, m.peerIndex, m.port, m.portIndex])).toEqual([
      [0, 'any peer', null, 'TCP/80', 0],
      [1, 'every pod of every namespace', 0, 'any port', null],
    ]);
  });

  it('a denied flow names the isolating policies, and for each rule whether its peers and its ports match', () => {
    const e = explain(
      [
        { ...B_ONLY, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'a' } } }], ports: [{ port: 81 }] }] },
        { ...B_ONLY, policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 80 }] }] },
        { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{}] },
      ],
      'x/a',
      'x/b',
    );
    expect(e.allowed).toBe(false);
    expect(e.egress.allowed).toBe(true);
    expect(e.ingress).toMatchObject({ isolated: true, allowed: false, policies: ['x/p0', 'x/p1'], allowedBy: [] });
    expect(e.ingress.notMatched).toEqual([
      { policy: 'x/p0', direction: 'ingress', rule: 0, peerMatches: true, portMatches: false },
      { policy: 'x/p1', direction: 'ingress', rule: 0, peerMatches: false, portMatches: true },
    ]);
    expect(e.ingress.reason).toBe('denied: isolated by x/p0, x/p1; none of their 2 ingress rules allows TCP/80 from x/a');
  });

  it('a policy with no rules of the direction denies, and says so', () => {
    const e = explain([{ ...B_ONLY, policyTypes: ['Ingress', 'Egress'] }], 'x/b', 'y/a');
    expect(e.egress).toMatchObject({ allowed: false, notMatched: [], reason: 'denied: isolated by x/p0, which has no egress rules' });
  });

  it('rules of a direction the policy does not isolate are not counted', () => {
    const e = explain([{ ...B_ONLY, policyTypes: ['Ingress'], egress: [{ to: [{ podSelector: {} }] }] }], 'x/b', 'y/a');
    expect(e.egress.isolated).toBe(false);
  });
});

describe('explain: ports and protocols', () => {
  it('SCTP and UDP are told apart from TCP; endPort ranges hold', () => {
    const policies: Partial<NetworkPolicy>[] = [{ ingress: [{ ports: [{ port: 80, protocol: 'SCTP' }, { port: 1000, endPort: 2000, protocol: 'UDP' }] }] }];
    expect(explain(policies, 'y/a', 'x/a', 80, 'TCP').allowed).toBe(false);
    expect(explain(policies, 'y/a', 'x/a', 80, 'SCTP').ingress.allowedBy[0]).toMatchObject({ port: 'SCTP/80', portIndex: 0 });
    expect(explain(policies, 'y/a', 'x/a', 1500, 'UDP').ingress.allowedBy[0]).toMatchObject({ port: 'UDP/1000-2000', portIndex: 1 });
    expect(explain(policies, 'y/a', 'x/a', 2001, 'UDP').allowed).toBe(false);
  });

  it('an egress named port resolves on the destination pod', () => {
    const policies: Partial<NetworkPolicy>[] = [{ ...B_ONLY, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-81-udp', protocol: 'UDP' }] }] }];
    expect(explain(policies, 'x/b', 'y/a', 81, 'UDP').egress.allowedBy[0]).toMatchObject({ rule: 0, peer: 'any peer', port: 'UDP/serve-81-udp' });
    expect(explain(policies, 'x/b', 'y/a', 80, 'UDP').egress.allowed).toBe(false);
    // An address outside the cluster has no named ports.
    expect(explain(policies, 'x/b', '8.8.8.8', 81, 'UDP').egress.allowed).toBe(false);
  });
});

describe('explain: addresses', () => {
  const egressTo = (peer: NonNullable<NetworkPolicy['egress']>[number]['to']) => [{ ...B_ONLY, policyTypes: ['Egress' as const], egress: [{ to: peer }] }];

  it('ipBlock rules judge addresses outside the cluster, excepts included', () => {
    const policies = egressTo([{ ipBlock: { cidr: '8.0.0.0/8', except: ['8.8.8.0/24'] } }]);
    const ok = explain(policies, 'x/b', '8.1.2.3');
    expect(ok.to).toEqual({ pod: null, ip: '8.1.2.3', kind: 'world' });
    expect(ok.egress.allowedBy[0]).toMatchObject({ peer: 'ipBlock 8.0.0.0/8 except 8.8.8.0/24', peerIndex: 0 });
    expect(ok.ingress).toMatchObject({ judged: false, allowed: true, pod: null, reason: 'the destination is no pod (world): no ingress policy applies' });
    expect(explain(policies, 'x/b', '8.8.8.8').egress).toMatchObject({ allowed: false, notMatched: [{ rule: 0, peerMatches: false, portMatches: true }] });
  });

  it('a pod address is that pod, and ipBlock rules match pod addresses too', () => {
    const e = explain(egressTo([{ ipBlock: { cidr: '10.0.1.0/24' } }]), 'x/b', '10.0.1.1');
    expect(e.to).toMatchObject({ pod: 'y/a', kind: 'pod' });
    expect(e.ingress.judged).toBe(true);
    expect(e.egress.allowedBy[0]).toMatchObject({ peer: 'ipBlock 10.0.1.0/24' });
  });

  it('names this node, other nodes and Service addresses; the Service is judged on its backend', () => {
    const policies = egressTo([{ ipBlock: { cidr: '192.168.0.0/16' } }]);
    expect(explain(policies, 'x/b', '192.168.1.10').to.kind).toBe('host');
    expect(explain(policies, 'x/b', '192.168.1.11').to.kind).toBe('remote-node');
    expect(explain(policies, 'x/b', '192.168.1.11').egress.allowed).toBe(true);
    const service = explain(policies, 'x/b', '10.96.0.10');
    expect(service.to.kind).toBe('service');
    expect(service.egress).toMatchObject({ judged: false, allowed: true });
  });

  it('from an address that is no pod, only the destination ingress judges, with the address identity', () => {
    const ingressFrom = (peer: NonNullable<NetworkPolicy['ingress']>[number]['from']) => [{ ...B_ONLY, policyTypes: ['Ingress' as const], ingress: [{ from: peer }] }];
    const policies = ingressFrom([{ ipBlock: { cidr: '8.0.0.0/8', except: ['8.8.8.0/24'] } }]);
    const ok = explain(policies, '8.1.2.3', 'x/b');
    expect(ok.from).toEqual({ pod: null, ip: '8.1.2.3', kind: 'world' });
    expect(ok.to).toMatchObject({ pod: 'x/b', ip: '10.0.0.2' });
    expect(ok.egress).toMatchObject({ judged: false, allowed: true, reason: 'the source is no pod (world): no egress policy applies' });
    expect(ok.ingress.allowedBy[0]).toMatchObject({ policy: 'x/p0', rule: 0, peer: 'ipBlock 8.0.0.0/8 except 8.8.8.0/24' });
    expect(ok.allowed).toBe(true);
    expect(explain(policies, '8.8.8.8', 'x/b').ingress).toMatchObject({ allowed: false, policies: ['x/p0'] });
    expect(explain(policies, '192.168.1.11', '10.0.0.2').from.kind).toBe('remote-node');
    // A pod's address is that pod, with its egress judged too.
    expect(explain(policies, '10.0.1.1', 'x/b').from).toMatchObject({ pod: 'y/a', kind: 'pod' });
    expect(() => explain(policies, '8.1.2.3', '8.1.2.4')).toThrow(/the destination must be a pod/);
  });

  it('a pod reaching itself is judged by nobody', () => {
    const e = explain([{ policyTypes: ['Ingress', 'Egress'] }], 'x/a', 'x/a');
    expect(e.allowed).toBe(true);
    expect(e.egress.judged).toBe(false);
    expect(e.ingress.judged).toBe(false);
  });

  it('uses the address family both pods have; IPv6 works like IPv4', () => {
    const dual = [pod('x', 'a', '10.0.0.1'), pod('x', 'b', '10.0.0.2'), { ...pod('y', 'a', 'fd00::11'), ips: ['fd00::11'] }, { ...pod('x', 'c', '10.0.0.3'), ips: ['10.0.0.3', 'fd00::3'] }];
    const v: ClusterView = { namespaces: NAMESPACES, pods: dual, policies: [{ namespace: 'y', name: 'v6', podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: 'fd00::/120' } }] }] }] };
    const e = explainFlow(v, { from: 'x/c', to: 'y/a', port: 80, protocol: 'TCP' });
    expect([e.from.ip, e.to.ip, e.allowed]).toEqual(['fd00::3', 'fd00::11', true]);
    expect(() => explainFlow(v, { from: 'x/a', to: 'y/a', port: 80, protocol: 'TCP' })).toThrow(ExplainQueryError);
  });
});

describe('explain: queries it refuses', () => {
  it('an unknown pod, a malformed reference, a bad port or protocol', () => {
    const v = view([]);
    expect(() => explainFlow(v, { from: 'x/nope', to: 'x/a', port: 80, protocol: 'TCP' })).toThrow(/no pod x\/nope/);
    expect(() => explainFlow(v, { from: 'xa', to: 'x/a', port: 80, protocol: 'TCP' })).toThrow(/not namespace\/pod/);
    expect(() => explainFlow(v, { from: 'x/a', to: 'x/b', port: 0, protocol: 'TCP' })).toThrow(/port 0/);
    expect(() => explainFlow(v, { from: 'x/a', to: 'x/b', port: 80, protocol: 'ICMP' as 'TCP' })).toThrow(/protocol ICMP/);
    expect(() => explainFlow(v, { from: 'x/a', to: '300.1.1.1', port: 80, protocol: 'TCP' })).toThrow(/neither/);
  });
});

describe('explain: the compiled state of a node', () => {
  it('marks the directions of local endpoints, and compiledVerdict reads a compiled endpoint as the datapath does', () => {
    const v = view([{ podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [B_ONLY] }] }]);
    const local: LocalEndpoint[] = [{ endpointId: 7, namespace: 'x', pod: 'a', ips: ['10.0.0.1'] }];
    const e = explainFlow(v, { from: 'x/b', to: 'x/a', port: 80, protocol: 'TCP' }, { local });
    expect([e.egress.local, e.ingress.local]).toEqual([false, true]);
    const state = compile(v, local, new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1));
    expect(compiledVerdict(state, 7, 'ingress', '10.0.0.2', Identity.WORLD, 'TCP', 80)).toBe(true);
    expect(compiledVerdict(state, 7, 'ingress', '10.0.1.2', Identity.WORLD, 'TCP', 80)).toBe(false);
    expect(compiledVerdict(state, 7, 'egress', '10.0.1.2', Identity.WORLD, 'TCP', 80)).toBe(true);
    expect(compiledVerdict(state, 8, 'ingress', '10.0.1.2', Identity.WORLD, 'TCP', 80)).toBeUndefined();
  });
});

describe('explain: the agent route and the CLI screen', () => {
  const kubePod = (ns: string, name: string, ip: string, node: string): KubeObject => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: ns, name, labels: { pod: name } },
    spec: { nodeName: node },
    status: { podIP: ip, podIPs: [{ ip }] },
  });
  const policyObject = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'x', name }, spec });
  const objects = (policies: KubeObject[]): ClusterObjects => ({
    pods: [kubePod('x', 'a', '10.0.0.1', 'n1'), kubePod('x', 'b', '10.0.0.2', 'n1'), kubePod('x', 'r', '10.0.9.1', 'n2')],
    namespaces: [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', labels: { ns: 'x' } } }],
    networkPolicies: policies,
    nodes: [],
  });
  const ONLY_B = policyObject('only-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] });
  const endpoints = [
    { id: 1, namespace: 'x', pod: 'a', ips: ['10.0.0.1'] },
    { id: 2, namespace: 'x', pod: 'b', ips: ['10.0.0.2'] },
  ] as Endpoint[];
  /** A node n1 whose maps were compiled from `compiledFrom` and whose datastore now holds `now`. */
  function context(compiledFrom: ClusterObjects, now: ClusterObjects): ExplainRouteContext {
    const local = endpoints.map((e) => ({ endpointId: e.id, namespace: e.namespace, pod: e.pod, ips: e.ips }));
    const state = compile(clusterViewOf(compiledFrom), local, new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1));
    return { node: 'n1', endpoints: { list: () => endpoints }, policy: { datastore: { objects: () => now }, sync: { state: () => state }, revision: 7, hostAddresses: () => [] }, serviceCidrs: [] };
  }

  it('judges local pods by the compiled state and remote pods from the datastore, naming their node', () => {
    const o = objects([ONLY_B]);
    const here = explainRoute(context(o, o), { from: 'x/b', to: 'x/a', port: 80, protocol: 'TCP' });
    expect([here.allowed, here.egress.basis, here.ingress.basis, here.ingress.node, here.answeredBy, here.policyRevision]).toEqual([true, 'compiled', 'compiled', 'n1', 'n1', 7]);
    expect(here.ingress.allowedBy[0]).toMatchObject({ policy: 'x/only-b', rule: 0, peerIndex: 0 });
    const remote = explainRoute(context(o, o), { from: 'x/r', to: 'x/a', port: 80, protocol: 'TCP' });
    expect([remote.allowed, remote.egress.basis, remote.egress.node, remote.ingress.basis]).toEqual([false, 'datastore', 'n2', 'compiled']);
    expect(remote.warnings).toEqual([]);
  });

  it('says so when the maps lag the datastore, and answers with what the maps enforce', () => {
    const x = explainRoute(context(objects([]), objects([ONLY_B])), { from: 'x/r', to: 'x/a', port: 80, protocol: 'TCP' });
    expect(x.ingress.allowed).toBe(true);
    expect(x.allowed).toBe(true);
    expect(x.warnings.join()).toMatch(/ingress of x\/a: this node's maps \(policy revision 7\) allow the flow, the datastore as it is now would deny it/);
  });

  it('refuses a query about a pod the datastore does not hold', () => {
    const o = objects([]);
    expect(() => explainRoute(context(o, o), { from: 'x/zz', to: 'x/a', port: 80, protocol: 'TCP' })).toThrow(/no pod x\/zz/);
  });

  it('prints the verdict, each direction, the rules and where each is enforced', () => {
    const o = objects([ONLY_B]);
    const lines = renderExplanation(explainRoute(context(o, o), { from: 'x/r', to: 'x/a', port: 80, protocol: 'TCP' }));
    expect(lines).toEqual([
      'x/r (10.0.9.1) -> x/a (10.0.0.1) TCP/80: DENIED',
      '  egress of x/r      not isolated: no policy selects the pod for egress',
      '                     enforced on node n2: computed here from the datastore with the same compiler',
      '  ingress of x/a     denied: isolated by x/only-b; its only ingress rule does not allow TCP/80 from x/r',
      '                     x/only-b ingress rule 0: peer does not match, port matches',
      '                     enforced on this node (n1): from its compiled policy',
    ]);
  });
});

// Generated policy sets of the NetworkPolicy suite, on its 3x3 model.
const POD_CIDR = '10.99.7.0/24';
const MODEL_IPS = new Map(MODEL_PODS.map((p, i) => [p, `10.99.7.${i + 2}`]));
const ctx: CaseContext = { ip: (p) => MODEL_IPS.get(p)!, podCIDR: POD_CIDR };
const SEED = 18;
const ITERATIONS = 24;

function viewOf(state: ClusterState): ClusterView {
  return {
    namespaces: state.namespaces,
    pods: state.pods.map((p) => ({ namespace: p.namespace, name: p.name, labels: p.labels, ips: [p.ip], ports: p.ports.map((c) => ({ ...c })) })),
    policies: state.policies.map((p) => ({ ...structuredClone(p.spec), namespace: p.metadata.namespace!, name: p.metadata.name })),
  };
}

/** The reference evaluator on one rule alone: a state whose only policy is that rule, isolating its direction. */
function referenceRuleAllows(state: ClusterState, policy: ModelPolicy, direction: 'ingress' | 'egress', rule: object, conn: Connection): boolean {
  const only: ModelPolicy = {
    ...policy,
    spec: { podSelector: policy.spec.podSelector, policyTypes: [direction === 'ingress' ? 'Ingress' : 'Egress'], [direction]: [rule] },
  };
  return sideAllows(direction === 'ingress' ? 'Ingress' : 'Egress', conn, { ...state, policies: [only] });
}

/** Every claim of one direction's verdict, checked against the reference evaluator. */
function checkDirection(state: ClusterState, d: DirectionVerdict, conn: Connection, where: string): void {
  const Dir = d.direction === 'ingress' ? 'Ingress' : 'Egress';
  expect(d.allowed, `${where}: verdict`).toBe(sideAllows(Dir, conn, state));
  const byName = new Map(state.policies.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]));
  const rules = (name: string) => (d.direction === 'ingress' ? byName.get(name)!.spec.ingress : byName.get(name)!.spec.egress) ?? [];
  const peerKey = d.direction === 'ingress' ? 'from' : 'to';
  for (const m of d.allowedBy) {
    const policy = byName.get(m.policy)!;
    const rule = rules(m.policy)[m.rule]!;
    expect(referenceRuleAllows(state, policy, d.direction, rule, conn), `${where}: ${m.policy} rule ${m.rule} allows`).toBe(true);
    if (m.peerIndex !== null) expect(referenceRuleAllows(state, policy, d.direction, { ...rule, [peerKey]: [(rule as Record<string, unknown[]>)[peerKey]![m.peerIndex]] }, conn), `${where}: peer`).toBe(true);
    if (m.portIndex !== null) expect(referenceRuleAllows(state, policy, d.direction, { ...rule, ports: [rule.ports![m.portIndex]] }, conn), `${where}: port`).toBe(true);
  }
  for (const m of d.notMatched) {
    const policy = byName.get(m.policy)!;
    const rule = rules(m.policy)[m.rule]!;
    expect(referenceRuleAllows(state, policy, d.direction, rule, conn), `${where}: ${m.policy} rule ${m.rule} does not allow`).toBe(false);
    expect(referenceRuleAllows(state, policy, d.direction, { [peerKey]: (rule as Record<string, unknown>)[peerKey] }, conn), `${where}: peerMatches`).toBe(m.peerMatches);
    expect(referenceRuleAllows(state, policy, d.direction, { ports: rule.ports }, conn), `${where}: portMatches`).toBe(m.portMatches);
  }
  // Every rule of the isolating policies is either listed as allowing or (for a denied flow) as not matching.
  const listed = d.allowed ? d.allowedBy.length : d.notMatched.length;
  const allRules = d.policies.reduce((n, name) => n + rules(name).length, 0);
  if (!d.allowed) expect(listed, `${where}: every rule accounted for`).toBe(allRules);
  if (d.allowed && d.isolated) expect(d.allowedBy.length, `${where}: some rule allows`).toBeGreaterThan(0);
}

describe('explain: generated policy sets agree with the reference evaluator and the compiled entries', () => {
  for (let i = 0; i < ITERATIONS; i++) {
    it(`seed ${SEED} iteration ${i}, then its mutation`, () => {
      const state = baseState(MODEL_IPS);
      const g = generate(SEED, i, ctx);
      recordApply(state, [...g.relabels, ...g.policies]);
      const m = mutate(SEED, i, ctx, g);
      for (const phase of ['generated', 'mutated']) {
        if (phase === 'mutated') {
          recordDelete(state, m.delete);
          recordApply(state, m.apply);
        }
        const v = viewOf(state);
        const local: LocalEndpoint[] = v.pods.map((p, k) => ({ endpointId: k + 1, namespace: p.namespace, pod: p.name, ips: p.ips }));
        const compiled = compile(v, local, new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1));
        const byIp = new Map(local.map((l) => [l.ips[0]!, l.endpointId]));
        const podOf = (ref: string) => state.pods.find((p) => `${p.namespace}/${p.name}` === ref)!;
        for (const combo of COMBOS) {
          const { protocol, port } = parseCombo(combo);
          for (const from of MODEL_PODS) {
            for (const to of MODEL_PODS) {
              if (from === to) continue;
              const where = `${phase} ${from} -> ${to} ${combo}`;
              const e = explainFlow(v, { from, to, port, protocol: protocol === 'tcp' ? 'TCP' : 'UDP' }, { local });
              expect(e.warnings, where).toEqual([]);
              expect(e.allowed, `${where}: the datapath's lookup over compile()`).toBe(flowAllowed(compiled, byIp, MODEL_IPS.get(from)!, MODEL_IPS.get(to)!, Protocol[protocol === 'tcp' ? 'TCP' : 'UDP'], port));
              const conn: Connection = { from: podOf(from), to: podOf(to), protocol, port };
              checkDirection(state, e.egress, conn, `${where} egress`);
              checkDirection(state, e.ingress, conn, `${where} ingress`);
            }
          }
        }
      }
    });
  }
});

/**
 * NetworkPolicies Sluice cannot compile as written (issue 31): each is named
 * with its cause, never stops the compile, and fails closed: the pods it
 * selects stay isolated, its unreadable rules allow nothing, and every other
 * rule and policy keeps working. Through clusterView(), the path every
 * datastore's objects take to the compiler.
 */
import { describe, expect, it } from 'vitest';
import { clusterView, policyErrors, type ClusterObjects } from '../agent/datastore/cluster-view.ts';
import type { KubeObject } from '../agent/datastore/local.ts';
import { Identity } from '../lib/identity-numbers.ts';
import { Protocol } from '../lib/protocols.ts';
import { compile, type LocalEndpoint } from '../policy/compile.ts';
import { MemoryNumbering } from '../policy/identity.ts';
import { checkPolicy } from '../policy/policy-check.ts';
import { flowAllowed } from './support/policy-lookup.ts';

const TCP = Protocol.TCP;
const UDP = Protocol.UDP;

function podObject(namespace: string, name: string, ip: string, ports: unknown[] = [{ name: 'http', containerPort: 80, protocol: 'TCP' }]): KubeObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { namespace, name, labels: { pod: name } }, spec: { containers: [{ name: 'c', ports }] }, status: { podIP: ip, podIPs: [{ ip }] } };
}

const POD_OBJECTS = [podObject('x', 'a', '10.0.0.1'), podObject('x', 'b', '10.0.0.2'), podObject('x', 'c', '10.0.0.3'), podObject('y', 'a', '10.0.1.1')];
const IPS: Record<string, string> = { 'x/a': '10.0.0.1', 'x/b': '10.0.0.2', 'x/c': '10.0.0.3', 'y/a': '10.0.1.1' };

function policyObject(name: string, spec: unknown, namespace = 'x'): KubeObject {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec } as KubeObject;
}

/** Compiles the objects as the agent does; returns "may from reach to". */
function cluster(policies: KubeObject[], pods = POD_OBJECTS) {
  const objects: ClusterObjects = { pods, namespaces: [{ metadata: { name: 'x' } }, { metadata: { name: 'y' } }] as KubeObject[], networkPolicies: policies, nodes: [] };
  const view = clusterView(objects);
  const local: LocalEndpoint[] = view.pods.map((p, i) => ({ endpointId: i + 1, namespace: p.namespace, pod: p.name, ips: p.ips }));
  const state = compile(view, local, new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1));
  const byIp = new Map(local.flatMap((l) => l.ips.map((ip) => [ip, l.endpointId] as const)));
  const can = (from: string, to: string, proto: number = TCP, port = 80) => flowAllowed(state, byIp, IPS[from] ?? from, IPS[to] ?? to, proto, port);
  return { can, state, errors: policyErrors(objects), view };
}

const onA = { matchLabels: { pod: 'a' } };
const fromB = { from: [{ podSelector: { matchLabels: { pod: 'b' } } }] };

describe('policy check: what cannot be compiled is named', () => {
  const cases: [string, unknown, RegExp][] = [
    ['a port out of range', { podSelector: onA, ingress: [{ ports: [{ port: 70000 }] }] }, /^ingress\[0\]\.ports\[0\]\.port: 70000 is not a port \(1-65535\) \(this rule allows nothing\)$/],
    ['a protocol that is not TCP, UDP or SCTP', { podSelector: onA, ingress: [{ ports: [{ protocol: 'tcp', port: 80 }] }] }, /ingress\[0\]\.ports\[0\]\.protocol: 'tcp' is not TCP, UDP or SCTP/],
    ['ICMP (not a NetworkPolicy protocol)', { podSelector: onA, ingress: [{ ports: [{ protocol: 'ICMP' }] }] }, /protocol: 'ICMP' is not TCP, UDP or SCTP/],
    ['endPort below port', { podSelector: onA, ingress: [{ ports: [{ port: 80, endPort: 10 }] }] }, /endPort: 10 is below port 80/],
    ['endPort without a port', { podSelector: onA, ingress: [{ ports: [{ endPort: 90 }] }] }, /endPort: needs a numeric port/],
    ['endPort with a named port', { podSelector: onA, ingress: [{ ports: [{ port: 'http', endPort: 90 }] }] }, /endPort: needs a numeric port/],
    ['an unknown selector operator', { podSelector: { matchExpressions: [{ key: 'pod', operator: 'Gt', values: ['1'] }] } }, /podSelector\.matchExpressions\[0\]\.operator: 'Gt' is not In, NotIn, Exists or DoesNotExist \(every pod of the namespace is selected\)/],
    ['In without values', { podSelector: onA, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'k', operator: 'In' }] } }] }] }, /In needs at least one value/],
    ['a peer with no selector', { podSelector: onA, ingress: [{ from: [{}] }] }, /ingress\[0\]\.from\[0\]: a peer needs a podSelector, a namespaceSelector or an ipBlock/],
    ['an ipBlock beside a selector', { podSelector: onA, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }] }, /ipBlock cannot be combined/],
    ['an ipBlock that is no CIDR', { podSelector: onA, egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/33' } }] }] }, /egress\[0\]\.to\[0\]\.ipBlock\.cidr: '10\.0\.0\.0\/33' is not a CIDR/],
    ['an except of the other family', { podSelector: onA, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['fd00::/8'] } }] }] }, /except\[0\]: 'fd00::\/8' is not of the family/],
    ['a policyType that is not Ingress or Egress', { podSelector: onA, policyTypes: ['ingress'] }, /policyTypes\[0\]: 'ingress' is not Ingress or Egress \(both directions are isolated\)/],
    ['rules that are not a list', { podSelector: onA, ingress: { from: [] } }, /^ingress: .* is not a list \(the pods it selects are isolated in ingress and it allows nothing\)$/],
    ['a label value that is not a string', { podSelector: { matchLabels: { pod: 1 } } }, /podSelector\.matchLabels\.pod: 1 is not a string/],
  ];
  for (const [what, spec, problem] of cases) {
    it(`${what}`, () => {
      const { problems } = checkPolicy('x', 'p', spec);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(problem);
    });
  }

  it('a policy the API server would accept is read as written, with nothing to say', () => {
    const spec = {
      podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['a'] }] },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: 'b' } } }, { ipBlock: { cidr: '10.0.0.1/8', except: ['10.1.0.0/16'] } }], ports: [{ port: 'http' }, { protocol: 'UDP', port: 53 }, { port: 8000, endPort: 8080 }] }],
      egress: [{}],
    };
    const { policy, problems } = checkPolicy('x', 'p', spec);
    expect(problems).toEqual([]);
    expect(policy.ingress![0]!.from![1]).toEqual({ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } });
    expect(policy.ingress![0]!.ports).toEqual([{ port: 'http' }, { protocol: 'UDP', port: 53 }, { port: 8000, endPort: 8080 }]);
  });

  it('policyErrors lists each object that cannot be compiled, by namespace and name, and no other', () => {
    const { errors } = cluster([policyObject('fine', { podSelector: onA }), policyObject('broken', { podSelector: onA, ingress: [{ ports: [{ port: 0 }] }, { ports: [{ protocol: 'tcp' }] }] }, 'y')]);
    expect(errors).toEqual([{ namespace: 'y', name: 'broken', problems: [expect.stringMatching(/^ingress\[0\]\.ports\[0\]\.port: 0 /), expect.stringMatching(/^ingress\[1\]\.ports\[0\]\.protocol/)] }]);
  });
});

describe('policy check: what cannot be compiled fails closed, and the rest keeps working', () => {
  it('a port out of range: the compile goes on, the rule allows nothing, the policy its other rules, other policies theirs', () => {
    const { can } = cluster([
      policyObject('broken', { podSelector: onA, ingress: [{ ports: [{ port: 70000 }] }, { ...fromB, ports: [{ protocol: 'UDP', port: 81 }] }] }),
      policyObject('other', { podSelector: { matchLabels: { pod: 'c' } }, ingress: [fromB] }),
    ]);
    expect(can('x/b', 'x/a', TCP, 80)).toBe(false);
    expect(can('y/a', 'x/a', TCP, 4464)).toBe(false); // 70000 mod 65536
    expect(can('x/b', 'x/a', UDP, 81)).toBe(true); // its other rule
    expect(can('x/b', 'x/c', TCP, 80)).toBe(true); // another policy
    expect(can('x/a', 'x/c', TCP, 80)).toBe(false);
    expect(can('x/a', 'y/a', TCP, 80)).toBe(true); // a pod no policy selects
  });

  it('a protocol Sluice cannot read allows nothing: no entry for every protocol on the port', () => {
    const { can, state } = cluster([policyObject('broken', { podSelector: onA, ingress: [{ ports: [{ protocol: 'tcp', port: 80 }] }] })]);
    expect(can('x/b', 'x/a', TCP, 80)).toBe(false);
    expect(can('x/b', 'x/a', UDP, 80)).toBe(false);
    expect(state.endpoints[0]!.ingressIsolated).toBe(true);
    expect(state.endpoints[0]!.entries).toEqual([]);
  });

  it('a podSelector Sluice cannot read isolates every pod of its namespace, no pod of another', () => {
    const { can } = cluster([policyObject('broken', { podSelector: { matchExpressions: [{ key: 'pod', operator: 'Gt', values: ['1'] }] }, ingress: [fromB] })]);
    expect(can('y/a', 'x/a')).toBe(false);
    expect(can('y/a', 'x/c')).toBe(false);
    expect(can('x/b', 'x/a')).toBe(true); // its rules still apply
    expect(can('x/a', 'y/a')).toBe(true);
  });

  it('policyTypes Sluice cannot read isolate both directions', () => {
    const { can } = cluster([policyObject('broken', { podSelector: onA, policyTypes: ['ingress'], ingress: [fromB] })]);
    expect(can('x/a', 'y/a')).toBe(false);
    expect(can('y/a', 'x/a')).toBe(false);
    expect(can('x/b', 'x/a')).toBe(true);
  });

  it('an egress rule that cannot be read keeps egress isolated where policyTypes were left to their default', () => {
    const { can } = cluster([policyObject('broken', { podSelector: onA, ingress: [{}], egress: [{ ports: [{ endPort: 90 }] }] })]);
    expect(can('x/a', 'x/b', TCP, 80)).toBe(false);
    expect(can('x/a', 'y/a', TCP, 443)).toBe(false);
    expect(can('x/b', 'x/a', TCP, 80)).toBe(true);
  });

  it('a peer with no selector allows nothing (not every pod of the namespace)', () => {
    const { can } = cluster([policyObject('broken', { podSelector: onA, ingress: [{ from: [{}] }] })]);
    expect(can('x/b', 'x/a')).toBe(false);
    expect(can('x/c', 'x/a')).toBe(false);
  });

  it('rules that are not a list isolate their direction and allow nothing, even where policyTypes were left to their default', () => {
    const { can } = cluster([policyObject('broken', { podSelector: onA, ingress: [fromB], egress: 'all' })]);
    expect(can('x/a', 'x/b')).toBe(false);
    expect(can('x/b', 'x/a')).toBe(true);
  });

  it('a rule that cannot be read keeps its place: the next rule keeps its number', () => {
    const { view } = cluster([policyObject('broken', { podSelector: onA, ingress: [{ ports: [{ port: -1 }] }, fromB] })]);
    expect(view.policies[0]!.ingress).toHaveLength(2);
    expect(view.policies[0]!.ingress![1]).toEqual(fromB);
  });

  it('a container port that is no port resolves no named port, and stops nothing', () => {
    const pods = [...POD_OBJECTS.slice(1), podObject('x', 'a', '10.0.0.1', [{ name: 'http', containerPort: 70000 }])];
    const { can } = cluster([policyObject('to-http', { podSelector: { matchLabels: { pod: 'b' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'http' }] }] })], pods);
    expect(can('x/b', 'x/a', TCP, 4464)).toBe(false);
    expect(can('x/b', 'x/c', TCP, 80)).toBe(true);
  });
});

import { describe, expect, it } from 'vitest';
import { Identity } from '../lib/identity-numbers.ts';
import { Protocol } from '../lib/protocols.ts';
import { addressPrefixes } from '../policy/address-rules.ts';
import { compile, type LocalEndpoint } from '../policy/compile.ts';
import { MemoryNumbering } from '../policy/identity.ts';
import { portRangePrefixes } from '../policy/port-prefixes.ts';
import { selectorMatches } from '../policy/selector.ts';
import type { ClusterView, NetworkPolicy, PolicyPod } from '../policy/types.ts';
import { flowAllowed } from './support/policy-lookup.ts';

const TCP = Protocol.TCP;
const UDP = Protocol.UDP;

describe('label selectors', () => {
  it('match everything when empty', () => expect(selectorMatches({}, { a: '1' })).toBe(true));
  it('NotIn also matches pods that lack the key', () => {
    const s = { matchExpressions: [{ key: 'tier', operator: 'NotIn' as const, values: ['db'] }] };
    expect(selectorMatches(s, {})).toBe(true);
    expect(selectorMatches(s, { tier: 'db' })).toBe(false);
    expect(selectorMatches(s, { tier: 'web' })).toBe(true);
  });
  it('Exists matches an empty value; DoesNotExist does not', () => {
    expect(selectorMatches({ matchExpressions: [{ key: 'k', operator: 'Exists' }] }, { k: '' })).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: 'k', operator: 'DoesNotExist' }] }, { k: '' })).toBe(false);
  });
  it('In needs the key and one of the values; matchLabels and expressions must both hold', () => {
    const s = { matchLabels: { app: 'a' }, matchExpressions: [{ key: 'v', operator: 'In' as const, values: ['1', '2'] }] };
    expect(selectorMatches(s, { app: 'a', v: '2' })).toBe(true);
    expect(selectorMatches(s, { app: 'a' })).toBe(false);
    expect(selectorMatches(s, { app: 'b', v: '1' })).toBe(false);
  });
});

describe('port prefixes', () => {
  it('split a range into the fewest aligned blocks', () => {
    expect(portRangePrefixes(80, 80)).toEqual([{ port: 80, prefixLength: 16 }]);
    expect(portRangePrefixes(0, 65535)).toEqual([{ port: 0, prefixLength: 0 }]);
    expect(portRangePrefixes(8080, 8083)).toEqual([{ port: 8080, prefixLength: 14 }]);
    expect(portRangePrefixes(1, 3)).toEqual([{ port: 1, prefixLength: 16 }, { port: 2, prefixLength: 15 }]);
  });
  it('cover exactly the range', () => {
    for (const [lo, hi] of [[1000, 65535], [79, 81], [1, 65534], [32768, 60999]] as const) {
      const covered = portRangePrefixes(lo, hi).reduce((n, p) => n + 2 ** (16 - p.prefixLength), 0);
      expect(covered).toBe(hi - lo + 1);
      expect(portRangePrefixes(lo, hi).length).toBeLessThanOrEqual(30);
    }
  });
});

describe('address rules', () => {
  it('insert excepts as holes and merge the ports of overlapping blocks', () => {
    const out = addressPrefixes([
      { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'], ports: ['6:80-80'] },
      { cidr: '10.1.2.0/24', except: [], ports: ['17:53-53'] },
    ]);
    expect(out.map((p) => [`${p.address}/${p.prefixLength}`, p.ports])).toEqual([
      ['10.0.0.0/8', ['6:80-80']],
      ['10.1.0.0/16', []],
      ['10.1.2.0/24', ['17:53-53']],
    ]);
  });
});

// A small cluster: namespaces x and y, pods a and b in each.
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
const IPS: Record<string, string> = Object.fromEntries(PODS.map((p) => [`${p.namespace}/${p.name}`, p.ips[0]!]));

function cluster(policies: Partial<NetworkPolicy>[], pods = PODS) {
  const view: ClusterView = {
    namespaces: new Map([
      ['x', { ns: 'x', 'kubernetes.io/metadata.name': 'x' }],
      ['y', { ns: 'y', 'kubernetes.io/metadata.name': 'y' }],
    ]),
    pods,
    policies: policies.map((p, i) => ({ namespace: 'x', name: `p${i}`, podSelector: {}, ...p })),
  };
  const local: LocalEndpoint[] = pods.map((p, i) => ({ endpointId: i + 1, namespace: p.namespace, pod: p.name, ips: p.ips }));
  const state = compile(view, local, new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1));
  const byIp = new Map(local.flatMap((l) => l.ips.map((ip) => [ip, l.endpointId] as const)));
  return (from: string, to: string, proto: number = TCP, port = 80) => flowAllowed(state, byIp, IPS[from] ?? from, IPS[to] ?? to, proto, port);
}

describe('compile: isolation', () => {
  it('without policies everything is allowed', () => {
    const can = cluster([]);
    expect(can('x/a', 'y/b')).toBe(true);
  });
  it('a policy with no ingress rules denies all ingress to the pods it selects, only', () => {
    const can = cluster([{ podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Ingress'] }]);
    expect(can('x/b', 'x/a')).toBe(false);
    expect(can('y/a', 'x/a')).toBe(false);
    expect(can('x/a', 'x/b')).toBe(true);
    expect(can('x/a', 'y/a')).toBe(true);
  });
  it('policyTypes omitted: egress rules make the policy Egress too; an explicit egress: [] does not', () => {
    const withRules = cluster([{ egress: [{ to: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }]);
    expect(withRules('x/a', 'y/a')).toBe(false);
    expect(withRules('x/a', 'x/b')).toBe(false); // x/b is ingress-isolated by the same policy (ingress: none)
    const emptyEgress = cluster([{ ingress: [{}], egress: [] }]);
    expect(emptyEgress('x/a', 'y/a')).toBe(true);
  });
  it('an empty rule allows every peer and port; rules of several policies add up', () => {
    const can = cluster([
      { policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] },
      { policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 81, protocol: 'UDP' }] }] },
    ]);
    expect(can('x/b', 'x/a', UDP, 9)).toBe(true);
    expect(can('y/a', 'x/a', UDP, 81)).toBe(true);
    expect(can('y/a', 'x/a', TCP, 80)).toBe(false);
    expect(cluster([{ ingress: [{}] }])('y/b', 'x/a', UDP, 12345)).toBe(true);
  });
});

describe('compile: peers', () => {
  it('a podSelector alone stays in the policy namespace; namespaceSelector {} means every namespace', () => {
    const own = cluster([{ ingress: [{ from: [{ podSelector: {} }] }] }]);
    expect(own('x/b', 'x/a')).toBe(true);
    expect(own('y/b', 'x/a')).toBe(false);
    const every = cluster([{ ingress: [{ from: [{ namespaceSelector: {} }] }] }]);
    expect(every('y/b', 'x/a')).toBe(true);
  });
  it('namespaceSelector and podSelector in one peer take matching pods in matching namespaces', () => {
    const can = cluster([{ ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchLabels: { pod: 'b' } } }] }] }]);
    expect(can('y/b', 'x/a')).toBe(true);
    expect(can('y/a', 'x/a')).toBe(false);
    expect(can('x/b', 'x/a')).toBe(false);
  });
  it('ipBlock matches pod addresses in the block, minus except', () => {
    const can = cluster([{ ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.0.1.0/24'] } }] }] }]);
    expect(can('x/b', 'x/a')).toBe(true);
    expect(can('y/a', 'x/a')).toBe(false);
    expect(can('192.168.1.1', 'x/a')).toBe(false);
  });
  it('ipBlock with host bits set reads as Kubernetes reads it: 10.0.0.1/16 is 10.0.0.0/16, excepts too', () => {
    const can = cluster([{ ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.1/16', except: ['10.0.1.7/24'] } }] }] }]);
    expect(can('x/b', 'x/a')).toBe(true);
    expect(can('y/a', 'x/a')).toBe(false);
    expect(can('192.168.1.1', 'x/a')).toBe(false);
  });
  it('an ipBlock that is no CIDR allows nothing, and neither fails the compile nor touches other peers and policies', () => {
    const can = cluster([
      { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ ipBlock: { cidr: 'banana' } }, { podSelector: { matchLabels: { pod: 'b' } } }] }] },
      { podSelector: { matchLabels: { pod: 'b' } }, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['not-a-cidr'] } }] }] },
    ]);
    expect(can('x/b', 'x/a')).toBe(true); // the other peer of the same rule
    expect(can('192.168.1.1', 'x/a')).toBe(false); // the bad peer allows nothing; x/a stays isolated
    expect(can('x/a', 'x/b')).toBe(false);
    expect(can('x/a', 'y/a')).toBe(true); // unselected pods are untouched
  });
  it('ipBlock on egress reaches addresses outside the cluster', () => {
    const can = cluster([{ podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '192.168.0.0/16' } }], ports: [{ port: 443 }] }] }]);
    expect(can('x/a', '192.168.3.4', TCP, 443)).toBe(true);
    expect(can('x/a', '192.168.3.4', TCP, 80)).toBe(false);
    expect(can('x/a', '172.16.0.1', TCP, 443)).toBe(false);
  });
});

describe('compile: ports', () => {
  it('TCP is the default protocol and endPort makes a range', () => {
    const can = cluster([{ ingress: [{ ports: [{ port: 8000, endPort: 8100 }] }] }]);
    expect(can('y/a', 'x/a', TCP, 8050)).toBe(true);
    expect(can('y/a', 'x/a', TCP, 8101)).toBe(false);
    expect(can('y/a', 'x/a', UDP, 8050)).toBe(false);
  });
  it('an ingress named port resolves on the destination, and its protocol must match', () => {
    const can = cluster([{ ingress: [{ ports: [{ port: 'serve-81-udp', protocol: 'UDP' }, { port: 'serve-80-tcp', protocol: 'UDP' }] }] }]);
    expect(can('y/a', 'x/a', UDP, 81)).toBe(true);
    expect(can('y/a', 'x/a', UDP, 80)).toBe(false);
    expect(can('y/a', 'x/a', TCP, 80)).toBe(false);
  });
  it('an egress named port resolves on each remote pod', () => {
    const pods = [...PODS.slice(0, 3), { ...pod('y', 'b', '10.0.1.2'), ports: [{ name: 'serve-80-tcp', containerPort: 8080, protocol: 'TCP' as const }] }];
    const can = cluster([{ podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-80-tcp' }] }] }], pods);
    expect(can('x/a', 'y/a', TCP, 80)).toBe(true);
    expect(can('x/a', 'y/b', TCP, 8080)).toBe(true);
    expect(can('x/a', 'y/b', TCP, 80)).toBe(false);
  });
});

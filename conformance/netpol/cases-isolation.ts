/**
 * Cases: default deny and allow all, for ingress, egress and both; several
 * policies on one pod; policyTypes defaulting.
 */
import { policy, type Case } from './case.ts';

const ALL = {};

/** Default deny, allow all, and how isolation adds up. */
export const ISOLATION_CASES: Case[] = [
  {
    name: 'default-deny-ingress',
    checks: "should support a 'default-deny-ingress' policy (TCP and UDP)",
    steps: [
      {
        title: 'x: podSelector {} with policyTypes [Ingress] and no rules',
        apply: () => [policy('x', 'deny-ingress', { podSelector: ALL, policyTypes: ['Ingress'] })],
        expect: (r) => r.deny({ to: 'x' }),
      },
    ],
  },
  {
    name: 'default-deny-egress',
    checks: 'should deny egress from all pods in a namespace',
    steps: [
      {
        title: 'x: podSelector {} with policyTypes [Egress] and no rules',
        apply: () => [policy('x', 'deny-egress', { podSelector: ALL, policyTypes: ['Egress'] })],
        expect: (r) => r.deny({ from: 'x' }),
      },
    ],
  },
  {
    name: 'default-deny-all',
    checks: "should support a 'default-deny-all' policy",
    steps: [
      {
        title: 'x: podSelector {} with policyTypes [Ingress, Egress] and no rules',
        apply: () => [policy('x', 'deny-all', { podSelector: ALL, policyTypes: ['Ingress', 'Egress'] })],
        expect: (r) => r.deny({ to: 'x' }).deny({ from: 'x' }),
      },
    ],
  },
  {
    name: 'allow-all-ingress',
    checks: 'should support allow-all policy',
    steps: [
      {
        title: 'x: podSelector {} with one empty ingress rule',
        apply: () => [policy('x', 'allow-all', { podSelector: ALL, ingress: [{}] })],
        expect: (r) => r,
      },
    ],
  },
  {
    name: 'deny-egress-pod',
    checks: 'should deny egress from pods based on PodSelector',
    steps: [
      {
        title: 'x/a isolated for egress with no rules',
        apply: () => [policy('x', 'deny-egress-a', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'] })],
        expect: (r) => r.deny({ from: 'x/a' }),
      },
    ],
  },
  {
    name: 'allow-ingress-to-target',
    checks: 'should enforce policy to allow ingress traffic for a target',
    steps: [
      {
        title: 'x: default deny ingress, plus x/a allows from podSelector {} and namespaceSelector {}',
        apply: () => [
          policy('x', 'deny-ingress', { podSelector: ALL, policyTypes: ['Ingress'] }),
          policy('x', 'allow-all-to-a', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: ALL, namespaceSelector: ALL }] }] }),
        ],
        expect: (r) => r.deny({ to: ['x/b', 'x/c'] }),
      },
    ],
  },
  {
    name: 'ingress-allow-all-takes-precedence',
    checks: 'should enforce multiple ingress policies with ingress allow-all policy taking precedence',
    steps: [
      {
        title: 'x: ingress allowed on port 80 (TCP) only',
        apply: () => [policy('x', 'allow-ingress-port-80', { podSelector: ALL, ingress: [{ ports: [{ port: 80 }] }] })],
        expect: (r) => r.deny({ to: 'x', on: ['tcp/81', 'udp/80', 'udp/81'] }),
      },
      {
        title: 'x: add a policy allowing all ingress',
        apply: () => [policy('x', 'allow-ingress', { podSelector: ALL, ingress: [{}] })],
        expect: (r) => r,
      },
    ],
  },
  {
    name: 'egress-allow-all-takes-precedence',
    checks: 'should enforce multiple egress policies with egress allow-all policy taking precedence',
    steps: [
      {
        title: 'x: egress allowed on port 80 (TCP) only',
        apply: () => [policy('x', 'allow-egress-port-80', { podSelector: ALL, policyTypes: ['Egress'], egress: [{ ports: [{ port: 80 }] }] })],
        expect: (r) => r.deny({ from: 'x', on: ['tcp/81', 'udp/80', 'udp/81'] }),
      },
      {
        title: 'x: add a policy allowing all egress',
        apply: () => [policy('x', 'allow-egress', { podSelector: ALL, policyTypes: ['Egress'], egress: [{}] })],
        expect: (r) => r,
      },
    ],
  },
  {
    name: 'ingress-egress-independent',
    checks: 'should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector',
    steps: [
      {
        title: 'x/a: allow all egress (policyTypes [Egress])',
        apply: () => [policy('x', 'allow-egress-a', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{}] })],
        expect: (r) => r,
      },
      {
        title: 'x/a: add a policy denying all ingress',
        apply: () => [policy('x', 'deny-ingress-a', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Ingress'] })],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-and-egress-together',
    checks: 'should work with Ingress, Egress specified together',
    steps: [
      {
        title: 'x/a: ingress from pod=b; egress on port 80 (TCP); policyTypes [Egress, Ingress]',
        apply: () => [
          policy('x', 'ingress-and-egress', {
            podSelector: { matchLabels: { pod: 'a' } },
            policyTypes: ['Egress', 'Ingress'],
            ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }],
            egress: [{ ports: [{ port: 80 }] }],
          }),
        ],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'x/b', to: 'x/a' }).deny({ from: 'x/a', on: ['tcp/81', 'udp/80', 'udp/81'] }),
      },
    ],
  },
  {
    name: 'policy-types-default-with-egress-rules',
    checks: 'policyTypes omitted: Ingress, plus Egress when the policy has egress rules (API reference)',
    steps: [
      {
        title: 'x/a: no policyTypes, ingress [{}], egress to namespace y',
        apply: () => [
          policy('x', 'implied-egress', {
            podSelector: { matchLabels: { pod: 'a' } },
            ingress: [{}],
            egress: [{ to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'y' } } }] }],
          }),
        ],
        expect: (r) => r.deny({ from: 'x/a' }).allow({ from: 'x/a', to: 'y' }),
      },
    ],
  },
  {
    name: 'policy-types-ingress-ignores-egress-rules',
    checks: 'egress rules of a policy whose policyTypes is [Ingress] have no effect (API reference)',
    steps: [
      {
        title: 'x/a: policyTypes [Ingress], no ingress rules, egress rules to namespace y',
        apply: () => [
          policy('x', 'ingress-only', {
            podSelector: { matchLabels: { pod: 'a' } },
            policyTypes: ['Ingress'],
            egress: [{ to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'y' } } }] }],
          }),
        ],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
    ],
  },
  {
    name: 'policies-add-up',
    checks: 'should enforce multiple, stacked policies with overlapping podSelectors (several policies on one pod add up)',
    steps: [
      {
        title: 'x/a: one policy allows from pod=b, another from namespace z on UDP',
        apply: () => [
          policy('x', 'from-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] }),
          policy('x', 'from-z-udp', {
            podSelector: ALL,
            ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'z' } } }], ports: [{ protocol: 'UDP' }] }],
          }),
        ],
        expect: (r) =>
          r
            .deny({ to: 'x' })
            .allow({ from: 'x/b', to: 'x/a' })
            .allow({ from: 'z', to: 'x', on: ['udp/80', 'udp/81'] }),
      },
      {
        title: 'delete the policy allowing from pod=b',
        delete: [{ kind: 'NetworkPolicy', namespace: 'x', name: 'from-b' }],
        expect: (r) => r.deny({ to: 'x' }).allow({ from: 'z', to: 'x', on: ['udp/80', 'udp/81'] }),
      },
    ],
  },
];

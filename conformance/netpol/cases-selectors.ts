/**
 * Cases: pod and namespace selectors alone and combined, matchLabels and
 * matchExpressions, several peers in one rule, several rules in one policy.
 */
import { policy, type Case } from './case.ts';
import type { LabelSelector } from './types.ts';

const ALL = {};
const POD_A: LabelSelector = { matchLabels: { pod: 'a' } };
const nsNamed = (name: string): LabelSelector => ({ matchLabels: { 'kubernetes.io/metadata.name': name } });
const notInX: LabelSelector = { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['x'] }] };

/** Which peers a rule takes. */
export const SELECTOR_CASES: Case[] = [
  {
    name: 'ingress-pod-selector',
    checks: 'should enforce policy to allow traffic from pods within server namespace based on PodSelector',
    steps: [
      {
        title: 'x/a: ingress from podSelector pod=b',
        apply: () => [policy('x', 'x-a-allows-x-b', { podSelector: POD_A, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'x/b', to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-all-namespaces',
    checks: 'should enforce policy to allow ingress traffic from pods in all namespaces',
    steps: [
      {
        title: 'x/a: ingress from namespaceSelector {}',
        apply: () => [policy('x', 'allow-from-all-ns', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: { matchLabels: {} } }] }] })],
        expect: (r) => r,
      },
    ],
  },
  {
    name: 'ingress-namespace-selector',
    checks: 'should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector',
    steps: [
      {
        title: 'x/a: ingress from namespaceSelector ns=y',
        apply: () => [policy('x', 'allow-from-y', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }] })],
        expect: (r) => r.deny({ from: ['x', 'z'], to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-namespace-default-label',
    checks: 'should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label',
    steps: [
      {
        title: 'x/a: ingress from namespaceSelector kubernetes.io/metadata.name=y',
        apply: () => [policy('x', 'allow-from-y-by-name', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: nsNamed('y') }] }] })],
        expect: (r) => r.deny({ from: ['x', 'z'], to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-pod-match-expressions',
    checks: 'should enforce policy based on PodSelector with MatchExpressions',
    steps: [
      {
        title: 'x/a: ingress from podSelector pod In [b]',
        apply: () => [
          policy('x', 'x-a-allows-x-b', { podSelector: POD_A, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b'] }] } }] }] }),
        ],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'x/b', to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-namespace-match-expressions',
    checks: 'should enforce policy based on NamespaceSelector with MatchExpressions',
    steps: [
      {
        title: 'x/a: ingress from namespaceSelector kubernetes.io/metadata.name In [y]',
        apply: () => [
          policy('x', 'allow-ns-y-match-expr', {
            podSelector: POD_A,
            ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['y'] }] } }] }],
          }),
        ],
        expect: (r) => r.deny({ from: ['x', 'z'], to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-exists-and-does-not-exist',
    checks: 'matchExpressions Exists, DoesNotExist and NotIn (API reference)',
    steps: [
      {
        title: 'x/a: ingress from namespaceSelector ns Exists with podSelector pod NotIn [a]; or namespaces without label ns',
        apply: () => [
          policy('x', 'exists-not-in', {
            podSelector: POD_A,
            ingress: [
              {
                from: [
                  { namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'Exists' }] }, podSelector: { matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['a'] }] } },
                  { namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'DoesNotExist' }] } },
                ],
              },
            ],
          }),
        ],
        expect: (r) => r.deny({ from: ['x/a', 'y/a', 'z/a'], to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-pod-or-namespace',
    checks: 'should enforce policy based on PodSelector or NamespaceSelector',
    steps: [
      {
        title: 'x/a: ingress from [namespaceSelector NotIn [x]] or [podSelector pod=b]',
        apply: () => [
          policy('x', 'pod-or-ns', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: notInX }, { podSelector: { matchLabels: { pod: 'b' } } }] }] }),
        ],
        expect: (r) => r.deny({ from: 'x/c', to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-pod-and-namespace',
    checks: 'should enforce policy based on PodSelector and NamespaceSelector',
    steps: [
      {
        title: 'x/a: ingress from {namespaceSelector NotIn [x], podSelector pod=b} (one peer: both must match)',
        apply: () => [policy('x', 'pod-and-ns', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: notInX, podSelector: { matchLabels: { pod: 'b' } } }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: ['y/b', 'z/b'], to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-multiple-pods-and-namespaces',
    checks: 'should enforce policy based on Multiple PodSelectors and NamespaceSelectors',
    steps: [
      {
        title: 'x/a: ingress from {namespaceSelector NotIn [x], podSelector pod In [b, c]}',
        apply: () => [
          policy('x', 'pods-b-c-not-x', {
            podSelector: POD_A,
            ingress: [{ from: [{ namespaceSelector: notInX, podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] } }] }],
          }),
        ],
        expect: (r) => r.deny({ from: 'x', to: 'x/a' }).deny({ from: ['y/a', 'z/a'], to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-any-pod-selectors',
    checks: 'should enforce policy based on any PodSelectors',
    steps: [
      {
        title: 'x/a: ingress from [podSelector pod=b] or [podSelector pod=c]',
        apply: () => [
          policy('x', 'from-b-or-c', { podSelector: POD_A, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }, { podSelector: { matchLabels: { pod: 'c' } } }] }] }),
        ],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: ['x/b', 'x/c'], to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-pod-in-other-namespace',
    checks: 'should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector (TCP and UDP)',
    steps: [
      {
        title: 'x/a: ingress from {namespaceSelector name=y, podSelector pod=a}',
        apply: () => [policy('x', 'from-y-a', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: nsNamed('y'), podSelector: POD_A }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'y/a', to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-same-namespace-only',
    checks: 'should deny ingress from pods on other namespaces',
    steps: [
      {
        title: 'x: ingress from podSelector {} (the policy namespace only)',
        apply: () => [policy('x', 'deny-other-ns', { podSelector: ALL, ingress: [{ from: [{ podSelector: { matchLabels: {} } }] }] })],
        expect: (r) => r.deny({ from: ['y', 'z'], to: 'x' }),
      },
    ],
  },
  {
    name: 'ingress-several-rules',
    checks: 'rules of one policy add up, each with its own peers and ports (API reference)',
    steps: [
      {
        title: 'x/a: rule 1 from pod=b on TCP 80; rule 2 from namespace z on UDP 81',
        apply: () => [
          policy('x', 'two-rules', {
            podSelector: POD_A,
            ingress: [
              { from: [{ podSelector: { matchLabels: { pod: 'b' } } }], ports: [{ protocol: 'TCP', port: 80 }] },
              { from: [{ namespaceSelector: nsNamed('z') }], ports: [{ protocol: 'UDP', port: 81 }] },
            ],
          }),
        ],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'x/b', to: 'x/a', on: ['tcp/80'] }).allow({ from: 'z', to: 'x/a', on: ['udp/81'] }),
      },
    ],
  },
  {
    name: 'egress-pod-and-namespace',
    checks: 'should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector',
    steps: [
      {
        title: 'x/a: egress to {namespaceSelector name=y, podSelector pod=a}',
        apply: () => [policy('x', 'to-y-a', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: nsNamed('y'), podSelector: POD_A }] }] })],
        expect: (r) => r.deny({ from: 'x/a' }).allow({ from: 'x/a', to: 'y/a' }),
      },
    ],
  },
  {
    name: 'egress-namespace-not-in',
    checks: 'should enforce policy based on NamespaceSelector with MatchExpressions using default ns label',
    steps: [
      {
        title: 'x/a: egress to namespaceSelector kubernetes.io/metadata.name NotIn [y]',
        apply: () => [
          policy('x', 'not-to-y', {
            podSelector: POD_A,
            policyTypes: ['Egress'],
            egress: [{ to: [{ namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['y'] }] } }] }],
          }),
        ],
        expect: (r) => r.deny({ from: 'x/a', to: 'y' }),
      },
    ],
  },
  {
    name: 'egress-denied-on-client-side',
    checks: 'should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)',
    steps: [
      {
        title: 'x/a: egress to y/a only; y/a and y/b: ingress from x/a',
        apply: () => {
          const fromXA = { from: [{ namespaceSelector: nsNamed('x'), podSelector: POD_A }] };
          return [
            policy('x', 'to-y-a', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: nsNamed('y'), podSelector: POD_A }] }] }),
            policy('y', 'a-from-x-a', { podSelector: POD_A, ingress: [fromXA] }),
            policy('y', 'b-from-x-a', { podSelector: { matchLabels: { pod: 'b' } }, ingress: [fromXA] }),
          ];
        },
        expect: (r) => r.deny({ from: 'x/a' }).deny({ to: ['y/a', 'y/b'] }).allow({ from: 'x/a', to: 'y/a' }),
      },
    ],
  },
];

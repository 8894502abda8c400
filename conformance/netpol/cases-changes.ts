/**
 * Cases: policies changed and deleted in the middle of a case, pods and
 * namespaces relabelled into and out of selectors.
 */
import { policy, policyRef, type Case } from './case.ts';
import { namespaceManifest, podManifest } from './model.ts';
import type { LabelSelector } from './types.ts';

const ALL = {};
const POD_A: LabelSelector = { matchLabels: { pod: 'a' } };

/** What happens when things change under a policy. */
export const CHANGE_CASES: Case[] = [
  {
    name: 'policy-updated',
    checks: 'should enforce updated policy',
    steps: [
      {
        title: 'x: allow all ingress',
        apply: () => [policy('x', 'allow-then-deny', { podSelector: ALL, ingress: [{}] })],
        expect: (r) => r,
      },
      {
        title: 'x: the same policy updated to ingress []',
        apply: () => [policy('x', 'allow-then-deny', { podSelector: ALL, ingress: [] })],
        expect: (r) => r.deny({ to: 'x' }),
      },
    ],
  },
  {
    name: 'policy-deleted',
    checks: 'should stop enforcing policies after they are deleted',
    steps: [
      {
        title: 'x: deny all ingress and egress',
        apply: () => [policy('x', 'deny-all', { podSelector: ALL, policyTypes: ['Ingress', 'Egress'] })],
        expect: (r) => r.deny({ to: 'x' }).deny({ from: 'x' }),
      },
      {
        title: 'delete the policy',
        delete: [policyRef('x', 'deny-all')],
        expect: (r) => r,
      },
    ],
  },
  {
    name: 'policy-selector-changed',
    checks: 'a policy whose podSelector changes moves its isolation to the newly selected pods',
    steps: [
      {
        title: 'x: deny ingress to pod=a',
        apply: () => [policy('x', 'moving', { podSelector: POD_A, policyTypes: ['Ingress'] })],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
      {
        title: 'x: the same policy now selects pod=c and isolates egress instead',
        apply: () => [policy('x', 'moving', { podSelector: { matchLabels: { pod: 'c' } }, policyTypes: ['Egress'] })],
        expect: (r) => r.deny({ from: 'x/c' }),
      },
    ],
  },
  {
    name: 'namespace-relabelled',
    checks: 'should allow ingress access from updated namespace',
    steps: [
      {
        title: 'x/a: ingress from namespaceSelector ns2=updated (no namespace has it)',
        apply: () => [policy('x', 'from-updated-ns', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns2: 'updated' } } }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
      {
        title: 'namespace y: add label ns2=updated',
        apply: () => [namespaceManifest('y', { ns: 'y', ns2: 'updated' })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'y', to: 'x/a' }),
      },
      {
        title: 'namespace y: remove the label again',
        apply: () => [namespaceManifest('y')],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
    ],
  },
  {
    name: 'pod-relabelled-into-peer',
    checks: 'should allow ingress access from updated pod',
    steps: [
      {
        title: 'x/a: ingress from podSelector {pod=b, pod2=updated} (no pod has it)',
        apply: () => [policy('x', 'from-updated-pod', { podSelector: POD_A, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b', pod2: 'updated' } } }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
      {
        title: 'pod x/b: add label pod2=updated',
        apply: () => [podManifest('x/b', { pod: 'b', pod2: 'updated' })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'x/b', to: 'x/a' }),
      },
      {
        title: 'pod x/b: back to its base labels',
        apply: () => [podManifest('x/b')],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
    ],
  },
  {
    name: 'pod-relabelled-into-target',
    checks: 'should deny ingress access to updated pod',
    steps: [
      {
        title: 'x: deny ingress to target=isolated (no pod has it)',
        apply: () => [policy('x', 'deny-isolated', { podSelector: { matchLabels: { target: 'isolated' } }, policyTypes: ['Ingress'] })],
        expect: (r) => r,
      },
      {
        title: 'pod x/a: add label target=isolated',
        apply: () => [podManifest('x/a', { pod: 'a', target: 'isolated' })],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
      {
        title: 'pod x/a: back to its base labels',
        apply: () => [podManifest('x/a')],
        expect: (r) => r,
      },
    ],
  },
  {
    name: 'pod-relabelled-out-of-egress-peer',
    checks: 'a source pod relabelled out of an egress peer loses access; relabelled back, regains it',
    steps: [
      {
        title: 'y: deny all egress; y/a: egress to pods with tier=db in any namespace; z/c gets tier=db',
        apply: () => [
          policy('y', 'deny-egress', { podSelector: ALL, policyTypes: ['Egress'] }),
          policy('y', 'a-to-db', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: ALL, podSelector: { matchLabels: { tier: 'db' } } }] }] }),
          podManifest('z/c', { pod: 'c', tier: 'db' }),
        ],
        expect: (r) => r.deny({ from: 'y' }).allow({ from: 'y/a', to: 'z/c' }),
      },
      {
        title: 'pod z/c: tier=db removed; pod x/b: tier=db added',
        apply: () => [podManifest('z/c'), podManifest('x/b', { pod: 'b', tier: 'db' })],
        expect: (r) => r.deny({ from: 'y' }).allow({ from: 'y/a', to: 'x/b' }),
      },
    ],
  },
  {
    name: 'namespace-relabelled-out-of-selector',
    checks: 'a namespace relabelled out of a namespaceSelector loses access for all its pods',
    steps: [
      {
        title: 'x: ingress from namespaces with team=blue; y and z get team=blue',
        apply: () => [
          policy('x', 'from-blue', { podSelector: ALL, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } } }] }] }),
          namespaceManifest('y', { ns: 'y', team: 'blue' }),
          namespaceManifest('z', { ns: 'z', team: 'blue' }),
        ],
        expect: (r) => r.deny({ from: 'x', to: 'x' }),
      },
      {
        title: 'namespace z: team=red',
        apply: () => [namespaceManifest('z', { ns: 'z', team: 'red' })],
        expect: (r) => r.deny({ from: ['x', 'z'], to: 'x' }),
      },
    ],
  },
];

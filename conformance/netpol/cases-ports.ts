/**
 * Cases: ports by number, by range (endPort), by name, and by protocol alone;
 * SCTP rules that must not open TCP; UDP variants.
 */
import { policy, type Case } from './case.ts';
import type { LabelSelector } from './types.ts';

const ALL = {};
const POD_A: LabelSelector = { matchLabels: { pod: 'a' } };
const NS_Y: LabelSelector = { matchLabels: { 'kubernetes.io/metadata.name': 'y' } };

/** Which ports and protocols a rule opens. */
export const PORT_CASES: Case[] = [
  {
    name: 'ingress-port-81-from-namespace',
    checks: 'should enforce policy based on Ports',
    steps: [
      {
        title: 'x/a: ingress from namespace y on TCP 81',
        apply: () => [policy('x', 'y-on-tcp-81', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: NS_Y }], ports: [{ port: 81, protocol: 'TCP' }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'y', to: 'x/a', on: ['tcp/81'] }),
      },
    ],
  },
  {
    name: 'ingress-udp-port-81-from-namespace',
    checks: 'should enforce policy based on Ports (UDP)',
    steps: [
      {
        title: 'x/a: ingress from namespace y on UDP 81',
        apply: () => [policy('x', 'y-on-udp-81', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: NS_Y }], ports: [{ port: 81, protocol: 'UDP' }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'y', to: 'x/a', on: ['udp/81'] }),
      },
    ],
  },
  {
    name: 'stacked-port-policies',
    checks: 'should enforce multiple, stacked policies with overlapping podSelectors',
    steps: [
      {
        title: 'x/a: ingress from namespace y on TCP 81',
        apply: () => [policy('x', 'y-on-81', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: NS_Y }], ports: [{ port: 81, protocol: 'TCP' }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'y', to: 'x/a', on: ['tcp/81'] }),
      },
      {
        title: 'x/a: add a second policy, from namespace y on TCP 80',
        apply: () => [policy('x', 'y-on-80', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: NS_Y }], ports: [{ port: 80, protocol: 'TCP' }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'y', to: 'x/a', on: ['tcp/80', 'tcp/81'] }),
      },
    ],
  },
  {
    name: 'ingress-protocol-only',
    checks: 'should enforce ingress policy allowing any port traffic to a server on a specific protocol',
    steps: [
      {
        title: 'x/a: ingress on protocol TCP, any port',
        apply: () => [policy('x', 'tcp-only', { podSelector: POD_A, ingress: [{ ports: [{ protocol: 'TCP' }] }] })],
        expect: (r) => r.deny({ to: 'x/a', on: ['udp/80', 'udp/81'] }),
      },
    ],
  },
  {
    name: 'udp-rule-does-not-open-tcp',
    checks: 'should not allow access by TCP when a policy specifies only UDP',
    steps: [
      {
        title: 'x/a: ingress on UDP 81 only',
        apply: () => [policy('x', 'udp-81', { podSelector: POD_A, ingress: [{ ports: [{ port: 81, protocol: 'UDP' }] }] })],
        expect: (r) => r.deny({ to: 'x/a', on: ['tcp/80', 'tcp/81', 'udp/80'] }),
      },
    ],
  },
  {
    name: 'sctp-rule-is-not-tcp',
    checks: "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
    steps: [
      {
        title: 'x: default deny ingress; x/a: ingress on SCTP 81',
        apply: () => [
          policy('x', 'deny-ingress', { podSelector: ALL, policyTypes: ['Ingress'] }),
          policy('x', 'sctp-81', { podSelector: POD_A, ingress: [{ ports: [{ port: 81, protocol: 'SCTP' }] }] }),
        ],
        expect: (r) => r.deny({ to: 'x' }),
      },
    ],
  },
  {
    name: 'sctp-rule-isolates',
    checks: "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
    steps: [
      {
        title: 'x/a: ingress on SCTP 80 only',
        apply: () => [policy('x', 'sctp-80', { podSelector: POD_A, ingress: [{ ports: [{ port: 80, protocol: 'SCTP' }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-named-port',
    checks: 'should allow ingress access on one named port',
    steps: [
      {
        title: 'x: ingress on named port serve-81-tcp',
        apply: () => [policy('x', 'named-81', { podSelector: ALL, ingress: [{ ports: [{ port: 'serve-81-tcp' }] }] })],
        expect: (r) => r.deny({ to: 'x', on: ['tcp/80', 'udp/80', 'udp/81'] }),
      },
    ],
  },
  {
    name: 'ingress-named-port-from-namespace',
    checks: 'should allow ingress access from namespace on one named port',
    steps: [
      {
        title: 'x/a: ingress from namespace y on named port serve-80-tcp (TCP)',
        apply: () => [
          policy('x', 'y-on-named-80', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: NS_Y }], ports: [{ port: 'serve-80-tcp', protocol: 'TCP' }] }] }),
        ],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'y', to: 'x/a', on: ['tcp/80'] }),
      },
    ],
  },
  {
    name: 'ingress-named-port-protocol',
    checks: 'a named port matches only a container port of the rule protocol (API reference: protocol defaults to TCP)',
    steps: [
      {
        title: 'x/a: ingress on serve-80-udp with the default protocol TCP (matches nothing)',
        apply: () => [policy('x', 'named-udp-as-tcp', { podSelector: POD_A, ingress: [{ ports: [{ port: 'serve-80-udp' }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }),
      },
      {
        title: 'x/a: the same policy with protocol UDP',
        apply: () => [policy('x', 'named-udp-as-tcp', { podSelector: POD_A, ingress: [{ ports: [{ port: 'serve-80-udp', protocol: 'UDP' }] }] })],
        expect: (r) => r.deny({ to: 'x/a', on: ['tcp/80', 'tcp/81', 'udp/81'] }),
      },
    ],
  },
  {
    name: 'egress-named-port',
    checks: 'should allow egress access on one named port',
    steps: [
      {
        title: 'x: egress on named port serve-80-tcp',
        apply: () => [policy('x', 'egress-named-80', { podSelector: ALL, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-80-tcp' }] }] })],
        expect: (r) => r.deny({ from: 'x', on: ['tcp/81', 'udp/80', 'udp/81'] }),
      },
    ],
  },
  {
    name: 'egress-named-port-to-namespace',
    checks: 'egress named ports resolve on the destination pods of the peer (API reference)',
    steps: [
      {
        title: 'x/a: egress to namespace y on named port serve-81-udp (UDP)',
        apply: () => [policy('x', 'to-y-named-81-udp', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: NS_Y }], ports: [{ port: 'serve-81-udp', protocol: 'UDP' }] }] })],
        expect: (r) => r.deny({ from: 'x/a' }).allow({ from: 'x/a', to: 'y', on: ['udp/81'] }),
      },
    ],
  },
  {
    name: 'ingress-end-port',
    checks: 'should enforce policy based on Ports with endPort (80-81 from one namespace)',
    steps: [
      {
        title: 'x/a: ingress from namespace y on TCP 80 to endPort 81',
        apply: () => [policy('x', 'y-on-80-81', { podSelector: POD_A, ingress: [{ from: [{ namespaceSelector: NS_Y }], ports: [{ protocol: 'TCP', port: 80, endPort: 81 }] }] })],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'y', to: 'x/a', on: ['tcp/80', 'tcp/81'] }),
      },
    ],
  },
  {
    name: 'ingress-end-port-partial',
    checks: 'endPort ranges include both ends and nothing outside them (UDP 81-90 and TCP 60-80)',
    steps: [
      {
        title: 'x: ingress on UDP 81 to endPort 90 and TCP 60 to endPort 80',
        apply: () => [
          policy('x', 'ranges', {
            podSelector: ALL,
            ingress: [{ ports: [{ protocol: 'UDP', port: 81, endPort: 90 }, { protocol: 'TCP', port: 60, endPort: 80 }] }],
          }),
        ],
        expect: (r) => r.deny({ to: 'x', on: ['tcp/81', 'udp/80'] }),
      },
    ],
  },
  {
    name: 'egress-end-port',
    checks: 'should enforce egress policy with endPort',
    steps: [
      {
        title: 'x/a: egress on TCP 79 to endPort 80 and UDP 81 to endPort 1024',
        apply: () => [
          policy('x', 'egress-ranges', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'TCP', port: 79, endPort: 80 }, { protocol: 'UDP', port: 81, endPort: 1024 }] }] }),
        ],
        expect: (r) => r.deny({ from: 'x/a', on: ['tcp/81', 'udp/80'] }),
      },
    ],
  },
];

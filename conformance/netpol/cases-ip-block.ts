/**
 * Cases: ipBlock peers on pod addresses, with and without except, for egress
 * and ingress, alone and next to other rules.
 */
import { policy, type Case } from './case.ts';
import type { LabelSelector } from './types.ts';

const POD_A: LabelSelector = { matchLabels: { pod: 'a' } };

/** The /4 around an IPv4 address: a block far larger than the pod CIDR, as upstream uses. */
function largeBlock(ip: string): string {
  return `${Number(ip.split('.')[0]) & 0xf0}.0.0.0/4`;
}

/** Which addresses an ipBlock takes. */
export const IP_BLOCK_CASES: Case[] = [
  {
    name: 'egress-cidr',
    checks: 'should allow egress access to server in CIDR block',
    steps: [
      {
        title: 'x/a: egress to ipBlock <y/b>/32',
        apply: (ctx) => [policy('x', 'to-y-b-cidr', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: `${ctx.ip('y/b')}/32` } }] }] })],
        expect: (r) => r.deny({ from: 'x/a' }).allow({ from: 'x/a', to: 'y/b' }),
      },
    ],
  },
  {
    name: 'egress-cidr-except',
    checks: 'should enforce except clause while egress access to server in CIDR block',
    steps: [
      {
        title: 'x/a: egress to ipBlock <large /4> except <x/b>/32',
        apply: (ctx) => [
          policy('x', 'cidr-except', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: largeBlock(ctx.ip('x/b')), except: [`${ctx.ip('x/b')}/32`] } }] }] }),
        ],
        expect: (r) => r.deny({ from: 'x/a', to: 'x/b' }),
      },
    ],
  },
  {
    name: 'egress-cidr-and-except-overlap',
    checks: 'should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed',
    steps: [
      {
        title: 'x/a: egress to ipBlock <large /4> except <x/b>/32',
        apply: (ctx) => [
          policy('x', 'cidr-except', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: largeBlock(ctx.ip('x/b')), except: [`${ctx.ip('x/b')}/32`] } }] }] }),
        ],
        expect: (r) => r.deny({ from: 'x/a', to: 'x/b' }),
      },
      {
        title: 'x/a: add a second policy allowing egress to <x/b>/32',
        apply: (ctx) => [policy('x', 'to-x-b', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: `${ctx.ip('x/b')}/32` } }] }] })],
        expect: (r) => r,
      },
      {
        title: 'x/a: replace the first policy with one allowing only <x/b>/32',
        apply: (ctx) => [policy('x', 'cidr-except', { podSelector: POD_A, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: `${ctx.ip('x/b')}/32` } }] }] })],
        expect: (r) => r.deny({ from: 'x/a' }).allow({ from: 'x/a', to: 'x/b' }),
      },
    ],
  },
  {
    name: 'ingress-cidr-except',
    checks: 'ipBlock with except on ingress matches pod source addresses (API reference)',
    steps: [
      {
        title: 'x/a: ingress from ipBlock <pod CIDR> except <y/b>/32 and <z/c>/32',
        apply: (ctx) => [
          policy('x', 'from-cidr-except', {
            podSelector: POD_A,
            ingress: [{ from: [{ ipBlock: { cidr: ctx.podCIDR, except: [`${ctx.ip('y/b')}/32`, `${ctx.ip('z/c')}/32`] } }] }],
          }),
        ],
        expect: (r) => r.deny({ from: ['y/b', 'z/c'], to: 'x/a' }),
      },
    ],
  },
  {
    name: 'ingress-cidr-with-ports',
    checks: 'an ipBlock peer with ports allows only those ports from the block (API reference)',
    steps: [
      {
        title: 'x/a: ingress from <x/b>/32 on UDP 80, and from namespace z on TCP 81',
        apply: (ctx) => [
          policy('x', 'cidr-ports', {
            podSelector: POD_A,
            ingress: [
              { from: [{ ipBlock: { cidr: `${ctx.ip('x/b')}/32` } }], ports: [{ protocol: 'UDP', port: 80 }] },
              { from: [{ namespaceSelector: { matchLabels: { ns: 'z' } } }], ports: [{ protocol: 'TCP', port: 81 }] },
            ],
          }),
        ],
        expect: (r) => r.deny({ to: 'x/a' }).allow({ from: 'x/b', to: 'x/a', on: ['udp/80'] }).allow({ from: 'z', to: 'x/a', on: ['tcp/81'] }),
      },
    ],
  },
  {
    name: 'egress-cidr-named-port',
    checks: 'an ipBlock peer with a named port resolves the name on each destination pod in the block (API reference)',
    steps: [
      {
        title: 'x/a: egress to <pod CIDR> except <z/a>/32 on named port serve-81-udp (UDP)',
        apply: (ctx) => [
          policy('x', 'cidr-named', {
            podSelector: POD_A,
            policyTypes: ['Egress'],
            egress: [{ to: [{ ipBlock: { cidr: ctx.podCIDR, except: [`${ctx.ip('z/a')}/32`] } }], ports: [{ protocol: 'UDP', port: 'serve-81-udp' }] }],
          }),
        ],
        expect: (r) => r.deny({ from: 'x/a' }).allow({ from: 'x/a', on: ['udp/81'] }).deny({ from: 'x/a', to: 'z/a' }),
      },
    ],
  },
];

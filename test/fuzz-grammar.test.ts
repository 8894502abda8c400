/**
 * The packet fuzzer's pure parts (conformance/fuzz/, issue 30): the grammar
 * is deterministic and reaches every production, the oracle blames exactly
 * the delivered frames it should, and the worker builds the frames the specs
 * describe (checked by parsing them back with scapy; no root, nothing sent).
 * The same for the VXLAN phase's grammar, oracle and frames.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { framesOf, generateRound, type PacketSpec } from '../conformance/fuzz/grammar.ts';
import { KNOWN_ISSUES, knownIssueOf, type KnownIssue } from '../conformance/fuzz/known.ts';
import { Oracle, frameKey, type OracleState } from '../conformance/fuzz/oracle.ts';
import { generateVxlanRound, nodeOfPod, podsOn, receivingNode, vxlanPayloadBytes, VXLAN_PORT, type VxlanSpec } from '../conformance/fuzz/vxlan-grammar.ts';
import { admittedSource, judgeVxlanRound, vxlanFrameKey } from '../conformance/fuzz/vxlan-oracle.ts';
import { payloadHex, resolveAddr, toVxlanWire, toWire, type Addressing, type VxlanAddressing } from '../conformance/fuzz/wire.ts';
import { PODS, baseState } from '../conformance/netpol/model.ts';
import type { NetworkPolicy } from '../conformance/netpol/types.ts';

const ipv4 = new Map(PODS.map((p, i) => [p, `10.1.2.${i + 2}`]));
const ipv6 = new Map(PODS.map((p, i) => [p, `fd00:1::${(i + 2).toString(16)}`]));
const addressing: Addressing = {
  ipv4,
  ipv6,
  mac: new Map(PODS.map((p, i) => [p, `02:00:00:00:00:0${i + 1}`])),
  gatewayMac: new Map(PODS.map((p) => [p, '02:ff:ff:ff:ff:01'])),
  cidr4: '10.1.2.0/24',
  cidr6: 'fd00:1::/120',
};

/** x/a isolated for ingress, admitting only y/b on udp/80. */
function oracleState(): OracleState {
  const state = baseState(ipv4);
  const allowYb: NetworkPolicy = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { namespace: 'x', name: 'a-from-yb' },
    spec: {
      podSelector: { matchLabels: { pod: 'a' } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchLabels: { pod: 'b' } } }], ports: [{ protocol: 'UDP', port: 80 }] }],
    },
  };
  state.policies.push(allowYb);
  return { state, ipv6 };
}

const udp = (n: number, from: string, to: string, sport: number, dport: number, extra: Partial<PacketSpec> = {}): PacketSpec => ({
  n,
  phase: 'open',
  kind: 'udp',
  from,
  to,
  family: 4,
  l4: { p: 'udp', sport, dport },
  payload: 16,
  ...extra,
});

/** Judges specs given the frame keys delivered ("n.i"); returns the disagreeing and the fail-closed keys. */
function judge(specs: PacketSpec[], delivered: string[]): { bad: string[]; failClosed: string[] } {
  const seen = new Map(delivered.map((k) => [k, 1]));
  const v = new Oracle().judgeRound(specs, seen, oracleState());
  return { bad: v.disagreements.map((d) => frameKey(d.frame)), failClosed: v.failClosed.map((d) => frameKey(d.frame)) };
}

describe('fuzzer grammar', () => {
  it('is a function of seed and round alone, and sends about the frames asked for', () => {
    expect(generateRound(3, 5, 600)).toEqual(generateRound(3, 5, 600));
    expect(generateRound(3, 5, 600)).not.toEqual(generateRound(3, 6, 600));
    expect(generateRound(4, 5, 600)).not.toEqual(generateRound(3, 5, 600));
    const frames = generateRound(3, 5, 600).reduce((n, s) => n + framesOf(s).length, 0);
    expect(frames).toBeGreaterThanOrEqual(600);
    expect(frames).toBeLessThan(700);
  });

  it('reaches every production, shape and fragment plan within a few rounds', () => {
    const specs = [0, 1, 2, 3].flatMap((r) => generateRound(1, r, 1500));
    const kinds = new Set(specs.map((s) => s.kind.replace(/^icmp-\d+$/, 'icmp-other')));
    for (const k of ['tcp', 'udp', 'sctp-init', 'echo', 'icmp-other', 'reply-tcp', 'reply-udp', 'reply-sctp', 'reply-echo', 'forged-reply-udp', 'error-from-receiver', 'error-from-third-pod', 'error-to-receiver', 'error-forged-flow']) {
      expect(kinds, k).toContain(k);
    }
    const plans = new Set(specs.map((s) => s.fragPlan));
    for (const p of ['in-order', 'reverse', 'tiny', 'overlap', 'first-only', 'tail-only', 'atomic']) expect(plans, p).toContain(p);
    const exts = new Set(specs.flatMap((s) => s.ext ?? []));
    for (const e of ['hbh', 'dst', 'frag', 'rt']) expect(exts, e).toContain(e);
    expect(specs.some((s) => s.ipv4Options?.length)).toBe(true);
    expect(specs.some((s) => s.spoof && 'pod' in s.spoof)).toBe(true);
    expect(specs.some((s) => s.spoof && 'unspecified' in s.spoof)).toBe(true);
    expect(specs.some((s) => s.forgedMac)).toBe(true);
    expect(specs.some((s) => s.truncate !== undefined)).toBe(true);
    expect(new Set(specs.filter((s) => s.l4.p === 'tcp').map((s) => (s.l4 as { flags: string }).flags)).size).toBeGreaterThanOrEqual(10);
    // Only the first piece of a fragmented datagram starts at 0 (a second one there would be another datagram).
    for (const s of specs.filter((x) => x.frags)) expect(s.frags!.filter(([off]) => off === 0).length, JSON.stringify(s)).toBeLessThanOrEqual(1);
    // Never a packet to itself; answers point at an open packet.
    expect(specs.filter((s) => s.from === s.to)).toEqual([]);
    const byRound = generateRound(1, 0, 1500);
    for (const s of byRound.filter((x) => x.phase === 'answer')) expect(byRound[s.about!]!.phase).toBe('open');
  });

  it('gives each frame its role: whole, first (offset 0, more to come) or later', () => {
    const spec = udp(0, 'x/a', 'x/b', 10000, 80, { frags: [[16, 16, true], [0, 16, true], [32, 8, false]] });
    expect(framesOf(spec).map((f) => f.role)).toEqual(['later', 'first', 'later']);
    expect(framesOf(udp(1, 'x/a', 'x/b', 1, 2)).map((f) => f.role)).toEqual(['whole']);
  });
});

describe('fuzzer oracle', () => {
  it('blames a delivered frame the policy denies, not one it allows', () => {
    const denied = udp(0, 'z/c', 'x/a', 10000, 80);
    const allowed = udp(1, 'y/b', 'x/a', 10001, 80);
    const otherPort = udp(2, 'y/b', 'x/a', 10002, 81);
    const unisolated = udp(3, 'x/a', 'z/c', 10003, 1000);
    expect(judge([denied, allowed, otherPort, unisolated], ['0.0', '1.0', '2.0', '3.0']).bad).toEqual(['0.0', '2.0']);
  });

  it('counts an allowed frame that did not arrive as fail closed, and a denied one that did not as nothing', () => {
    expect(judge([udp(0, 'y/b', 'x/a', 10000, 80), udp(1, 'z/c', 'x/a', 10001, 80)], [])).toEqual({ bad: [], failClosed: ['0.0'] });
  });

  it('lets a reply of an allowed flow through, and not one of a denied flow', () => {
    const open = udp(0, 'y/b', 'x/a', 10000, 80);
    const reply: PacketSpec = { ...udp(1, 'x/a', 'y/b', 80, 10000), phase: 'answer', about: 0, kind: 'reply-udp' };
    const deniedOpen = udp(2, 'z/c', 'x/a', 10002, 80);
    const deniedReply: PacketSpec = { ...udp(3, 'x/a', 'z/c', 80, 10002), phase: 'answer', about: 2, kind: 'reply-udp' };
    // x/a's egress is not isolated: its packet to z/c is allowed as a new flow whatever z/c's flow was.
    expect(judge([open, reply, deniedOpen, deniedReply], ['0.0', '1.0', '3.0']).bad).toEqual([]);
    // The other way round: z/c's "reply" into isolated x/a for a flow x/a never opened.
    const fakeReply: PacketSpec = { ...udp(4, 'z/c', 'x/a', 9999, 10004), phase: 'answer', kind: 'reply-udp' };
    expect(judge([fakeReply], ['4.0']).bad).toEqual(['4.0']);
  });

  it('knows the flows of earlier rounds while the policy still allows them', () => {
    const oracle = new Oracle();
    const o = oracleState();
    oracle.judgeRound([udp(0, 'y/b', 'x/a', 10000, 80)], new Map([['0.0', 1]]), o);
    const reply: PacketSpec = { ...udp(0, 'x/a', 'y/b', 80, 10000), phase: 'answer', kind: 'reply-udp' };
    // x/a's egress is isolated now, so its reply is no new flow: it passes only as the earlier round's flow.
    o.state.policies.push({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'x', name: 'deny-egress' }, spec: { podSelector: {}, policyTypes: ['Egress'] } });
    expect(oracle.judgeRound([reply], new Map([['0.0', 1]]), o).disagreements).toEqual([]);
    // Once the policy no longer allows the flow, its packets are blamed again.
    o.state.policies = o.state.policies.filter((p) => p.metadata.name === 'deny-egress');
    o.state.policies.push({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'x', name: 'deny-ingress' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } });
    expect(oracle.judgeRound([reply], new Map([['0.0', 1]]), o).disagreements.map((d) => frameKey(d.frame))).toEqual(['0.0']);
  });

  it('never lets a spoofed source, a forged MAC, a Routing header or neighbour discovery through', () => {
    const specs = [
      udp(0, 'x/b', 'z/c', 10000, 80, { spoof: { pod: 'y/b' } }),
      udp(1, 'x/b', 'z/c', 10001, 80, { forgedMac: true }),
      udp(2, 'x/b', 'z/c', 10002, 80, { family: 6, ext: ['dst', 'rt'] }),
      { ...udp(3, 'x/b', 'z/c', 0, 0), family: 6 as const, kind: 'icmp-135', l4: { p: 'icmp' as const, type: 135, code: 0 } },
    ];
    expect(judge(specs, ['0.0', '1.0', '2.0', '3.0']).bad).toEqual(['0.0', '1.0', '2.0', '3.0']);
  });

  it('lets an ICMP error through only from the receiver of a quoted packet of an open flow, to its sender', () => {
    const open = udp(0, 'y/b', 'x/a', 10000, 80);
    const quote = { src: { pod: 'y/b' }, dst: { pod: 'x/a' }, l4: { p: 'udp' as const, sport: 10000, dport: 80 } };
    const err = (n: number, from: string, to: string, q = quote): PacketSpec => ({ n, phase: 'answer', kind: 'error', from, to, family: 4, payload: 0, about: 0, l4: { p: 'icmp-error', type: 3, code: 3, quote: q } });
    const fromReceiver = err(1, 'x/a', 'y/b');
    const fromThird = err(2, 'z/c', 'y/b');
    const toReceiver = err(3, 'y/b', 'x/a');
    const neverOpen = err(4, 'x/a', 'y/b', { ...quote, l4: { p: 'udp', sport: 12345, dport: 80 } });
    const r = judge([open, fromReceiver, fromThird, toReceiver, neverOpen], ['0.0', '1.0', '2.0', '3.0', '4.0']);
    expect(r.bad).toEqual(['2.0', '3.0', '4.0']);
    // Errors are never flows: even between pods no policy isolates, an unrelated error is blamed.
    expect(judge([err(5, 'z/a', 'z/b', { ...quote, src: { pod: 'z/b' }, dst: { pod: 'z/a' } })], ['5.0']).bad).toEqual(['5.0']);
  });

  it('judges a later fragment as its datagram, or as an earlier justified datagram with the same identification', () => {
    const frags: [number, number, boolean][] = [[0, 16, true], [16, 16, false]];
    const ok = udp(0, 'y/b', 'x/a', 10000, 80, { frags, fragId: 7, fragPlan: 'in-order' });
    const sameIdDenied = udp(1, 'y/b', 'x/a', 10001, 81, { frags: [[16, 16, false]], fragId: 7, fragPlan: 'tail-only' });
    const otherIdDenied = udp(2, 'y/b', 'x/a', 10002, 81, { frags: [[16, 16, false]], fragId: 8, fragPlan: 'tail-only' });
    const r = judge([ok, sameIdDenied, otherIdDenied], ['0.0', '0.1', '1.0', '2.0']);
    expect(r.bad).toEqual(['2.0']);
    // Later fragments of a datagram whose first fragment did not arrive are not missed.
    expect(judge([ok], []).failClosed).toEqual(['0.0']);
  });

  it('sets apart the disagreements of a filed bug, by their packets', () => {
    const v = (spec: PacketSpec) => new Oracle().judgeRound([spec], new Map([['0.0', 1]]), oracleState()).disagreements[0]!;
    const filed: KnownIssue[] = [{ id: 'udp-81', title: 'a bug that lets udp/81 through', matches: (d) => d.spec.l4.p === 'udp' && d.spec.l4.dport === 81 }];
    expect(knownIssueOf(v(udp(0, 'z/c', 'x/a', 10000, 81)), filed)?.id).toBe('udp-81');
    expect(knownIssueOf(v(udp(0, 'z/c', 'x/a', 10000, 80)), filed)).toBeUndefined();
    // Each open one is filed with a way to reproduce it.
    for (const k of KNOWN_ISSUES) expect(k.title).toMatch(/issue \d+.*main\.ts --seed \d+/s);
  });
});

describe('fuzzer wire', () => {
  it('resolves addresses and marks each payload with its round and index', () => {
    expect(resolveAddr({ unused: 250 }, 4, addressing)).toBe('10.1.2.250');
    expect(resolveAddr({ unused: 250 }, 6, addressing)).toBe('fd00:1::fa');
    expect(resolveAddr({ pod: 'y/b' }, 6, addressing)).toBe(ipv6.get('y/b'));
    expect(payloadHex(1, 2, 12)).toBe('465a00000001000246' + '5a0000');
  });

  it('builds the frames the spec describes (parsed back with scapy)', () => {
    const specs: PacketSpec[] = [
      udp(0, 'x/a', 'y/b', 10000, 80, { ipv4Options: ['rr', 'nop'], frags: [[8, 8, true], [0, 8, true], [16, 8, false]], fragId: 77, payload: 16 }),
      { ...udp(1, 'x/a', 'y/b', 10001, 81), family: 6, ext: ['hbh', 'frag', 'dst'], frags: [[0, 24, true], [24, 8, false]], fragId: 99, payload: 8 },
      { n: 2, phase: 'open', kind: 'sctp-init', from: 'x/a', to: 'y/b', family: 4, payload: 0, l4: { p: 'sctp', sport: 5000, dport: 80, chunk: 'init', tag: 42 } },
      { n: 3, phase: 'answer', kind: 'error', from: 'y/b', to: 'x/a', family: 6, payload: 0, l4: { p: 'icmp-error', type: 2, code: 0, quote: { src: { pod: 'x/a' }, dst: { pod: 'y/b' }, l4: { p: 'tcp', sport: 1, dport: 80, flags: 'S', seq: 5 } } } },
      { ...udp(4, 'x/a', 'y/b', 10004, 80), truncate: 3, spoof: { pod: 'z/c' }, forgedMac: true },
    ];
    const wires = JSON.stringify(specs.map((s) => toWire(s, 9, addressing)));
    const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(path.join(import.meta.dirname, '../conformance/fuzz'))})
import worker
from scapy.all import Ether, IP, UDP, Raw
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, ICMPv6PacketTooBig
from scapy.layers.sctp import SCTP
out = []
for w in json.loads(sys.stdin.read()):
    rows = []
    for fr in worker.frames(w):
        p = Ether(fr)
        if IP in p:
            ip = p[IP]
            rows.append({"v": 4, "src": ip.src, "frag": ip.frag, "mf": bool(ip.flags.MF), "id": ip.id, "ihl": ip.ihl, "proto": ip.proto,
                         "udp": bool(UDP in p and ip.frag == 0), "sctp_tag": p[SCTP].tag if SCTP in p else None, "len": ip.len, "wire": len(fr) - 14,
                         "macsrc": p.src})
        else:
            ip = p[IPv6]
            f = p[IPv6ExtHdrFragment] if IPv6ExtHdrFragment in p else None
            rows.append({"v": 6, "nh": ip.nh, "frag": f.offset if f else None, "mf": bool(f.m) if f else None, "id": f.id if f else None,
                         "ptb": ICMPv6PacketTooBig in p, "plen": ip.plen, "wire": len(fr) - 54})
    out.append(rows)
print(json.dumps(out))
`;
    const rows = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: wires, encoding: 'utf8' })) as Record<string, unknown>[][];
    // IPv4 with options, in 3 fragments sent out of order: offsets in 8-byte units, MF on all but the last.
    expect(rows[0]!.map((r) => [r.frag, r.mf, r.id, r.ihl])).toEqual([[1, true, 77, 7], [0, true, 77, 7], [2, false, 77, 7]]);
    expect(rows[0]!.every((r) => r.len === r.wire)).toBe(true);
    expect(rows[0]![1]!.udp).toBe(true);
    // IPv6: hop-by-hop, then the fragment header, then destination options inside the fragmentable part.
    expect(rows[1]!.map((r) => [r.nh, r.frag, r.mf, r.id])).toEqual([[0, 0, true, 99], [0, 3, false, 99]]);
    expect(rows[1]!.every((r) => r.plen === r.wire)).toBe(true);
    expect(rows[2]![0]!.sctp_tag).toBe(0); // an INIT's verification tag is 0
    expect(rows[3]![0]!.ptb).toBe(true);
    // Truncated, spoofed, forged MAC.
    expect(rows[4]![0]).toMatchObject({ src: ipv4.get('z/c'), macsrc: '02:de:ad:be:ef:01', len: 23 });
  });
});

const vxlanAddressing: VxlanAddressing = {
  nodes: new Map([
    ['node-1', { address: '172.20.0.1', gateway4: '10.1.2.1', gateway6: 'fd00:1::1', vtepMac: '02:53:ac:14:00:01' }],
    ['node-2', { address: '172.20.0.2', gateway4: '10.1.2.129', gateway6: 'fd00:1::81', vtepMac: '02:53:ac:14:00:02' }],
  ]),
  vni: 1,
};

/** A VXLAN packet from `from` to `target`, inner UDP to `to` (a pod on the receiving node) from `src`. */
const vx = (n: number, from: string, target: VxlanSpec['target'], to: string, src: VxlanSpec['inner']['src'], extra: Partial<VxlanSpec> = {}): VxlanSpec => ({
  n,
  kind: 'vxlan',
  from,
  target,
  family: 4,
  sport: 40000 + n,
  vni: 'cluster',
  flags: 0x08,
  inner: { family: 4, to, src, l4: { p: 'udp', sport: 10000 + n, dport: 80 }, payload: 16 },
  ...extra,
});

function judgeVxlan(specs: VxlanSpec[], seen: Record<string, string[]>): { bad: string[]; failClosed: string[] } {
  const v = judgeVxlanRound(specs, new Map(Object.entries(seen)), oracleState());
  return { bad: v.disagreements.map((d) => vxlanFrameKey(d.spec.n, d.frame)), failClosed: v.failClosed.map((d) => vxlanFrameKey(d.spec.n, d.frame)) };
}

describe('fuzzer VXLAN phase', () => {
  it('places the pods on both nodes and addresses every inner packet to a pod on the receiving node', () => {
    expect(podsOn('node-1')).toEqual(['x/a', 'x/c', 'y/b', 'z/a', 'z/c']);
    expect(podsOn('node-2')).toEqual(['x/b', 'y/a', 'y/c', 'z/b']);
    const specs = [0, 1, 2].flatMap((r) => generateVxlanRound(1, r, 600));
    expect(generateVxlanRound(1, 2, 600)).toEqual(generateVxlanRound(1, 2, 600));
    expect(generateVxlanRound(1, 2, 600)).not.toEqual(generateVxlanRound(2, 2, 600));
    for (const s of specs) {
      expect(nodeOfPod(s.inner.to), JSON.stringify(s)).toBe(receivingNode(s));
      if ('node' in s.target && s.target.addr === 'underlay') expect(s.family).toBe(4);
      if ('pod' in s.target) expect(s.target.pod).not.toBe(s.from);
      if ('node' in s.inner.src) expect(s.inner.family).toBe(4);
      expect(s.flags).toBe(0x08);
    }
    expect(new Set(specs.map((s) => s.kind))).toEqual(new Set(['vxlan-own-node', 'vxlan-other-node', 'vxlan-own-gateway', 'vxlan-other-gateway', 'vxlan-pod']));
    const sources = new Set(specs.map((s) => ('pod' in s.inner.src ? (s.inner.src.pod === s.from ? 'sender' : 'pod') : Object.keys(s.inner.src)[0]! + JSON.stringify(Object.values(s.inner.src)[0]))));
    expect(sources).toEqual(new Set(['sender', 'pod', 'admittedtrue', 'victimtrue', 'node"receiver"', 'node"remote"']));
    expect(new Set(specs.map((s) => s.inner.l4.p))).toEqual(new Set(['tcp', 'udp', 'echo']));
    expect(new Set(specs.map((s) => `${s.family}${s.inner.family}`))).toEqual(new Set(['44', '46', '64', '66']));
    expect(specs.some((s) => s.vni === 'cluster') && specs.some((s) => s.vni !== 'cluster')).toBe(true);
    expect(new Set(specs.map((s) => s.fragPlan))).toEqual(new Set([undefined, 'in-order', 'reverse']));
  });

  it('forges, for "admitted", a pod the inner destination\'s policy lets through', () => {
    // x/a admits only y/b on udp/80.
    expect(admittedSource(vx(0, 'x/c', { node: 'own', addr: 'underlay' }, 'x/a', { admitted: true }), oracleState())).toBe('y/b');
    // udp/81 to x/a: nobody; then the pod after x/a.
    const to81 = vx(1, 'x/c', { node: 'own', addr: 'underlay' }, 'x/a', { admitted: true });
    to81.inner.l4 = { p: 'udp', sport: 1, dport: 81 };
    expect(admittedSource(to81, oracleState())).toBe('x/b');
  });

  it('blames every inner packet delivered, and an outer packet anywhere but at a pod that policy lets it reach', () => {
    const toNode = vx(0, 'x/c', { node: 'other', addr: 'underlay' }, 'x/b', { admitted: true });
    const toGateway = vx(1, 'x/c', { node: 'own', addr: 'gateway' }, 'x/a', { pod: 'z/b' });
    // x/a is isolated (only y/b on udp/80): udp/4789 from z/a is denied; z/c is not isolated.
    const toDeniedPod = vx(2, 'z/a', { pod: 'x/a' }, 'x/c', { victim: true });
    const toPod = vx(3, 'z/a', { pod: 'z/c' }, 'x/a', { node: 'remote' });
    const seen = { '0.0': ['x/b'], '0.inner': ['x/b'], '1.0': ['x/a'], '2.0': ['x/a'], '3.0': ['z/c'], '3.inner': ['x/a'] };
    expect(judgeVxlan([toNode, toGateway, toDeniedPod, toPod], seen).bad.sort()).toEqual(['0.0', '0.inner', '1.0', '2.0', '3.inner']);
    // The allowed contrast packet seen at another pod too.
    expect(judgeVxlan([toPod], { '3.0': ['z/c', 'y/a'] }).bad).toEqual(['3.0']);
    // Nothing delivered: only the allowed contrast packet is missed.
    expect(judgeVxlan([toNode, toGateway, toDeniedPod, toPod], {})).toEqual({ bad: [], failClosed: ['3.0'] });
  });

  it('builds a VXLAN packet to port 4789 holding the inner frame for the receiving node\'s VXLAN device (parsed back with scapy)', () => {
    const specs: VxlanSpec[] = [
      vx(0, 'x/c', { node: 'other', addr: 'underlay' }, 'x/b', { admitted: true }),
      { ...vx(1, 'x/b', { node: 'own', addr: 'gateway' }, 'y/c', { node: 'receiver' }), family: 6, vni: 0xabcde },
      vx(2, 'x/c', { node: 'own', addr: 'underlay' }, 'z/a', { victim: true }),
    ];
    // Outer IPv4 in three fragments, out of order, over the whole UDP datagram (header, VXLAN header, inner frame).
    specs[2]!.inner = { ...specs[2]!.inner, family: 6, l4: { p: 'tcp', sport: 10002, dport: 81, flags: 'S', seq: 9 } };
    const udpBytes = 8 + vxlanPayloadBytes(specs[2]!.inner);
    Object.assign(specs[2]!, { frags: [[16, 16, true], [0, 16, true], [32, udpBytes - 32, false]], fragPlan: 'reverse', fragId: 5 });
    const wires = JSON.stringify(specs.map((s) => toVxlanWire(s, 3, 'y/b', addressing, vxlanAddressing)));
    const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(path.join(import.meta.dirname, '../conformance/fuzz'))})
import worker
from scapy.all import Ether, IP, UDP, TCP, Raw
from scapy.layers.inet6 import IPv6
from scapy.layers.vxlan import VXLAN
out = []
for w in json.loads(sys.stdin.read()):
    frs = worker.frames(w)
    if len(frs) > 1:
        # Reassembled by hand: the fragments' payloads by offset.
        parts = sorted((Ether(f)[IP].frag * 8, bytes(Ether(f)[IP].payload)) for f in frs)
        first = Ether(frs[[Ether(f)[IP].frag for f in frs].index(0)])
        p = Ether(bytes(Ether(dst=first.dst, src=first.src) / IP(src=first[IP].src, dst=first[IP].dst, proto=17) / UDP(b"".join(b for _, b in parts))))
    else:
        p = Ether(frs[0])
    ip = p.payload
    u = ip.payload
    v = p[VXLAN]
    inner = v.payload
    iip = inner[IP] if IP in inner else inner[IPv6]
    out.append({"dst": ip.dst, "dport": u.dport, "ulen": u.len, "ulen_ok": u.len == len(bytes(u)),
                "csum_ok": len(frs) > 1 or (UDP(bytes(type(ip)(src=ip.src, dst=ip.dst) / UDP(sport=u.sport, dport=u.dport) / Raw(bytes(u.payload)))[20 if type(ip) is IP else 40:]).chksum == u.chksum),
                "flags": int(v.flags), "vni": v.vni, "edst": inner.dst, "esrc": inner.src, "isrc": iip.src, "idst": iip.dst,
                "tcp": TCP in inner, "frags": len(frs), "inner_key": worker.inner_key(w) == worker.key_of(bytes(iip))})
print(json.dumps(out))
`;
    const rows = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: wires, encoding: 'utf8' })) as Record<string, unknown>[];
    expect(rows[0]).toMatchObject({ dst: '172.20.0.2', dport: VXLAN_PORT, ulen_ok: true, csum_ok: true, flags: 0x08, vni: 1, edst: '02:53:ac:14:00:02', esrc: '02:53:ac:14:00:01', isrc: ipv4.get('y/b'), idst: ipv4.get('x/b'), inner_key: true });
    expect(rows[1]).toMatchObject({ dst: 'fd00:1::81', vni: 0xabcde, edst: '02:53:ac:14:00:02', isrc: '172.20.0.2', idst: ipv4.get('y/c'), ulen_ok: true, csum_ok: true });
    expect(rows[2]).toMatchObject({ dst: '172.20.0.1', frags: 3, edst: '02:53:ac:14:00:01', isrc: ipv6.get('z/a'), idst: ipv6.get('z/a'), tcp: true, inner_key: true });
  });
});

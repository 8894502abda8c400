/**
 * The fuzzer's VXLAN case (issue 30, "VXLAN toward nodes"), for its two-node
 * VXLAN phase. Pure, like grammar.ts: a packet is a spec in terms of pods and
 * nodes, the same for the same (seed, round) on any cluster.
 *
 * A pod sends UDP to port 4789 of a node address (its own node's, the other
 * node's, either node's pod-CIDR gateway) or, for contrast, of a pod, carrying
 * a VXLAN header (flags 0x08, the cluster's VNI or another) and an inner
 * Ethernet frame to the receiving node's VXLAN device, whose IPv4 or IPv6
 * packet is addressed to a pod on that node from a forged source: another
 * pod, a pod the destination's policy admits (the forgery that would pass
 * policy), the destination itself, a node's address. Decapsulated by a node,
 * the inner packet would enter that node past the spoofing check of the node
 * it really came from. Now and then the outer datagram is fragmented (in
 * order or reversed), so that its later pieces carry no port.
 */
import { PODS } from '../netpol/model.ts';
import { Random } from '../netpol/random.ts';
import type { Family, Fragment, Transport } from './grammar.ts';

/** The nodes of the VXLAN phase's cluster (`sluice local up --nodes 2`). */
export const VXLAN_NODES = ['node-1', 'node-2'] as const;
/** A node of the VXLAN phase. */
export type VxlanNode = (typeof VXLAN_NODES)[number];
/** IANA's VXLAN port, where every node's overlay device listens. */
export const VXLAN_PORT = 4789;
/** The VXLAN flags of a valid header: "I", a VNI follows. */
export const VXLAN_FLAGS = 0x08;

/** The node a model pod runs on: node-1 and node-2 in turn, in the model's order (x/a on node-1, x/b on node-2, ...). */
export function nodeOfPod(pod: string): VxlanNode {
  const i = PODS.indexOf(pod);
  if (i < 0) throw new Error(`no pod ${pod} in the model`);
  return VXLAN_NODES[i % VXLAN_NODES.length]!;
}

/** The model pods on a node. */
export function podsOn(node: VxlanNode): string[] {
  return PODS.filter((p) => nodeOfPod(p) === node);
}

/** The other node. */
export function otherNode(node: VxlanNode): VxlanNode {
  return node === 'node-1' ? 'node-2' : 'node-1';
}

/**
 * The outer packet's destination: a node's underlay address (IPv4), or the
 * gateway address of its pod CIDR, on the sender's node or the other one; or
 * a pod (the contrast: an ordinary UDP datagram to port 4789 of a pod).
 */
export type VxlanTarget = { node: 'own' | 'other'; addr: 'underlay' | 'gateway' } | { pod: string };

/**
 * The inner packet's source: a pod's address; a pod whose packets the inner
 * destination's policy admits on the inner port (resolved per round, from
 * the policies: vxlan-oracle.ts, admittedSource); the inner destination's own
 * address; a node's underlay address (the node that decapsulates it, or the
 * other one). Node addresses are IPv4 only.
 */
export type InnerSource = { pod: string } | { admitted: true } | { victim: true } | { node: 'receiver' | 'remote' };

/** The packet inside the tunnel. */
export interface InnerPacket {
  family: Family;
  /** A pod on the node that receives the outer packet. */
  to: string;
  src: InnerSource;
  l4: Extract<Transport, { p: 'tcp' | 'udp' | 'echo' }>;
  payload: number;
}

/** One VXLAN packet a pod sends. */
export interface VxlanSpec {
  n: number;
  /** The production, for the report: vxlan-own-node, vxlan-other-node, vxlan-own-gateway, vxlan-other-gateway, vxlan-pod. */
  kind: string;
  from: string;
  target: VxlanTarget;
  /** The outer family: IPv4 toward a node's underlay address (the underlay is IPv4), either toward gateways and pods. */
  family: Family;
  sport: number;
  /** The cluster's VNI (read from the nodes' VXLAN device) or another. */
  vni: 'cluster' | number;
  flags: number;
  inner: InnerPacket;
  /** The outer datagram's fragments, in send order (IPv6: behind a Fragment header). */
  frags?: Fragment[];
  fragPlan?: 'in-order' | 'reverse';
  fragId?: number;
}

/** The node that receives a spec's outer packet (and would decapsulate it). */
export function receivingNode(spec: Pick<VxlanSpec, 'from' | 'target'>): VxlanNode {
  if ('pod' in spec.target) return nodeOfPod(spec.target.pod);
  const own = nodeOfPod(spec.from);
  return spec.target.node === 'own' ? own : otherNode(own);
}

/** Bytes of an Ethernet header, the VXLAN header and the outer UDP header. */
const ETH = 14;
const VXLAN_HEADER = 8;
const UDP_HEADER = 8;
const INNER_DPORTS = [80, 81, 80, 81, 7000, 443];
const INNER_TCP_FLAGS = ['S', 'S', 'SA', 'A', 'PA', 'R', 'F'];

/** The outer UDP payload's length: the VXLAN header and the inner frame. */
export function vxlanPayloadBytes(inner: InnerPacket): number {
  const l4 = inner.l4.p === 'tcp' ? 20 : 8;
  return VXLAN_HEADER + ETH + (inner.family === 4 ? 20 : 40) + l4 + inner.payload;
}

function innerSource(rnd: Random, family: Family, to: string, from: string): InnerSource {
  const roll = rnd.int(0, 9);
  if (roll <= 3) return { admitted: true };
  if (roll <= 5) return { pod: rnd.pick(PODS.filter((p) => p !== to && p !== from)) };
  if (roll === 6) return { pod: from };
  if (roll === 7) return { victim: true };
  // Node addresses are IPv4; an IPv6 inner packet forges a pod instead.
  if (family === 6) return { admitted: true };
  return { node: roll === 8 ? 'remote' : 'receiver' };
}

function innerTransport(rnd: Random, sport: number): InnerPacket['l4'] {
  const roll = rnd.int(0, 9);
  if (roll <= 3) return { p: 'udp', sport, dport: rnd.pick(INNER_DPORTS) };
  if (roll <= 7) return { p: 'tcp', sport, dport: rnd.pick(INNER_DPORTS), flags: rnd.pick(INNER_TCP_FLAGS), seq: rnd.int(0, 0xffffffff) };
  return { p: 'echo', reply: false, id: sport, seq: rnd.int(0, 0xffff) };
}

function target(rnd: Random, from: string): { target: VxlanTarget; kind: string } {
  const roll = rnd.int(0, 19);
  if (roll <= 6) return { kind: 'vxlan-own-node', target: { node: 'own', addr: 'underlay' } };
  if (roll <= 13) return { kind: 'vxlan-other-node', target: { node: 'other', addr: 'underlay' } };
  if (roll <= 15) return { kind: 'vxlan-own-gateway', target: { node: 'own', addr: 'gateway' } };
  if (roll <= 16) return { kind: 'vxlan-other-gateway', target: { node: 'other', addr: 'gateway' } };
  return { kind: 'vxlan-pod', target: { pod: rnd.pick(PODS.filter((p) => p !== from)) } };
}

/** An outer datagram cut into two or three pieces of 8-byte multiples (the first holds the UDP header and the VXLAN header). */
function outerFragments(rnd: Random, bytes: number): { frags: Fragment[]; fragPlan: 'in-order' | 'reverse' } {
  const piece = 8 * rnd.int(2, 5);
  const frags: Fragment[] = [];
  for (let off = 0; off < bytes; off += piece) frags.push([off, Math.min(piece, bytes - off), off + piece < bytes]);
  const fragPlan = rnd.chance(0.5) ? 'in-order' : 'reverse';
  return { frags: fragPlan === 'reverse' ? frags.reverse() : frags, fragPlan };
}

/**
 * The VXLAN packets of round `round` of the run seeded `seed`: about `frames`
 * frames, from every pod. Same arguments, same packets.
 */
export function generateVxlanRound(seed: number, round: number, frames: number): VxlanSpec[] {
  const rnd = Random.forIteration(seed ^ 0x7c1a5e, round);
  const specs: VxlanSpec[] = [];
  // Source ports and echo ids: fresh each round and packet (10,000 + ...), never an inner or outer destination port.
  const base = 10_000 + ((round * Math.max(1000, frames)) % 50_000);
  let sent = 0;
  while (sent < frames) {
    const n = specs.length;
    const from = rnd.pick(PODS);
    const { target: t, kind } = target(rnd, from);
    const family: Family = 'node' in t && t.addr === 'underlay' ? 4 : rnd.chance(0.6) ? 4 : 6;
    const to = rnd.pick(podsOn(receivingNode({ from, target: t })));
    const innerFamily: Family = rnd.chance(0.6) ? 4 : 6;
    const inner: InnerPacket = { family: innerFamily, to, src: innerSource(rnd, innerFamily, to, from), l4: innerTransport(rnd, 10_000 + ((base + n) % 55_000)), payload: rnd.int(1, 8) * 8 };
    const spec: VxlanSpec = {
      n,
      kind,
      from,
      target: t,
      family,
      sport: 10_000 + ((base + n * 7) % 55_000),
      vni: rnd.chance(0.7) ? 'cluster' : rnd.int(2, 0xffffff),
      flags: VXLAN_FLAGS,
      inner,
    };
    if (rnd.chance(0.1)) {
      Object.assign(spec, outerFragments(rnd, UDP_HEADER + vxlanPayloadBytes(inner)));
      spec.fragId = family === 4 ? ((round * 977 + n) % 65_535) + 1 : round * 100_000 + n + 1;
    }
    specs.push(spec);
    sent += spec.frags?.length ?? 1;
  }
  return specs;
}

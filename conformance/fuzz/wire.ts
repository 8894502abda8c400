/**
 * From a packet spec (pods) to what a pod's worker sends (addresses, MACs,
 * payload bytes). Pure. The payload is a marker repeated: the round and the
 * packet's index, so that no two packets of a run are the same bytes.
 */
import type { AddrRef, Family, PacketSpec, Transport } from './grammar.ts';
import { otherNode, receivingNode, VXLAN_PORT, type VxlanNode, type VxlanSpec } from './vxlan-grammar.ts';

/** What the wire needs to know of the cluster. */
export interface Addressing {
  ipv4: Map<string, string>;
  ipv6: Map<string, string>;
  mac: Map<string, string>;
  gatewayMac: Map<string, string>;
  /** The pod CIDRs, for addresses in them that no pod has. */
  cidr4: string;
  cidr6: string;
}

/** The worker's packet (conformance/fuzz/worker.py, WIRE). */
export interface Wire {
  family: Family;
  src: string;
  dst: string;
  src_mac: string;
  dst_mac: string;
  options?: string[];
  ext?: string[];
  l4: unknown;
  payload: string;
  truncate?: number;
  frags?: [number, number, boolean][];
  frag_id?: number;
  /** IPv4 identification (of a packet not fragmented) or IPv6 flow label: unique in the round, so no two packets are the same bytes. */
  ip_id: number;
  /** A VXLAN packet: l4 is the outer UDP header, and its payload the VXLAN header and the inner frame (worker.py, vxlan_l4). */
  vxlan?: { vni: number; flags: number; inner: Wire };
}

/** What the VXLAN phase needs to know of a node. */
export interface NodeAddressing {
  /** Its underlay (InternalIP) address, IPv4. */
  address: string;
  /** The gateway of its pod CIDRs (their first address after the network), one per family. */
  gateway4: string;
  gateway6: string;
  /** The MAC of its VXLAN device: an inner frame to it is the node's to route. */
  vtepMac: string;
}

/** The nodes of the VXLAN phase, and the VNI their VXLAN devices use. */
export interface VxlanAddressing {
  nodes: Map<VxlanNode, NodeAddressing>;
  vni: number;
}

const FORGED_MAC = '02:de:ad:be:ef:01';

/** An address of a CIDR's network plus an offset (IPv4 dotted or IPv6 with "::"). */
function inCidr(cidr: string, offset: number): string {
  const base = cidr.split('/')[0]!;
  if (!base.includes(':')) {
    const parts = base.split('.').map(Number);
    const n = ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) + offset;
    return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');
  }
  // The fuzzer's IPv6 pod CIDR is written with a "::"-terminated base (cluster.ts).
  if (!base.endsWith('::')) throw new Error(`IPv6 CIDR ${cidr} does not end in "::"`);
  return `${base}${offset.toString(16)}`;
}

/** The address an AddrRef stands for. */
export function resolveAddr(ref: AddrRef, family: Family, a: Addressing): string {
  if ('pod' in ref) {
    const ip = (family === 4 ? a.ipv4 : a.ipv6).get(ref.pod);
    if (!ip) throw new Error(`no IPv${family} address for pod ${ref.pod}`);
    return ip;
  }
  if ('unused' in ref) return inCidr(family === 4 ? a.cidr4 : a.cidr6, ref.unused);
  if ('unspecified' in ref) return family === 4 ? '0.0.0.0' : '::';
  if ('linkLocal' in ref) return family === 4 ? '169.254.7.7' : 'fe80::7';
  return family === 4 ? '192.0.2.7' : '2001:db8::7';
}

/** The payload: 8-byte markers "FZ" + round (4 bytes) + index (2 bytes), repeated, cut to length. */
export function payloadHex(round: number, n: number, bytes: number): string {
  const marker = Buffer.alloc(8);
  marker.write('FZ', 0, 'latin1');
  marker.writeUInt32BE(round >>> 0, 2);
  marker.writeUInt16BE(n & 0xffff, 6);
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 8) marker.copy(out, i, 0, Math.min(8, bytes - i));
  return out.toString('hex');
}

function wireTransport(l4: Transport, family: Family, a: Addressing): unknown {
  if (l4.p !== 'icmp-error') return l4;
  return { ...l4, quote: { src: resolveAddr(l4.quote.src, family, a), dst: resolveAddr(l4.quote.dst, family, a), l4: l4.quote.l4 } };
}

/** The worker's packet for a spec of round `round`. */
export function toWire(spec: PacketSpec, round: number, a: Addressing): Wire {
  const w: Wire = {
    family: spec.family,
    src: resolveAddr(spec.spoof ?? { pod: spec.from }, spec.family, a),
    dst: resolveAddr({ pod: spec.to }, spec.family, a),
    src_mac: spec.forgedMac ? FORGED_MAC : a.mac.get(spec.from)!,
    dst_mac: a.gatewayMac.get(spec.from) ?? 'ff:ff:ff:ff:ff:ff',
    l4: wireTransport(spec.l4, spec.family, a),
    payload: payloadHex(round, spec.n, spec.payload),
    ip_id: spec.family === 4 ? (spec.n % 0xffff) + 1 : ((round & 0xf) << 16) | (spec.n & 0xffff),
  };
  if (spec.ipv4Options) w.options = spec.ipv4Options;
  if (spec.ext) w.ext = spec.ext;
  if (spec.truncate !== undefined) w.truncate = spec.truncate;
  if (spec.frags) w.frags = spec.frags;
  if (spec.fragId !== undefined) w.frag_id = spec.fragId;
  return w;
}

function nodeAddressing(v: VxlanAddressing, node: VxlanNode): NodeAddressing {
  const n = v.nodes.get(node);
  if (!n) throw new Error(`no addresses for node ${node}`);
  return n;
}

/** The outer destination address of a VXLAN spec. */
export function vxlanTargetAddr(spec: VxlanSpec, a: Addressing, v: VxlanAddressing): string {
  if ('pod' in spec.target) return resolveAddr({ pod: spec.target.pod }, spec.family, a);
  const node = nodeAddressing(v, receivingNode(spec));
  if (spec.target.addr === 'underlay') return node.address;
  return spec.family === 4 ? node.gateway4 : node.gateway6;
}

/** The inner source address of a VXLAN spec; `admitted`: the pod that stands for { admitted: true } this round. */
export function innerSourceAddr(spec: VxlanSpec, admitted: string, a: Addressing, v: VxlanAddressing): string {
  const src = spec.inner.src;
  const family = spec.inner.family;
  if ('pod' in src) return resolveAddr(src, family, a);
  if ('admitted' in src) return resolveAddr({ pod: admitted }, family, a);
  if ('victim' in src) return resolveAddr({ pod: spec.inner.to }, family, a);
  const receiver = receivingNode(spec);
  return nodeAddressing(v, src.node === 'receiver' ? receiver : otherNode(receiver)).address;
}

/**
 * The worker's packet for a VXLAN spec of round `round`: UDP from the pod's
 * own address and MAC to port 4789 of the target, the inner frame from the
 * other node's VXLAN device to the receiving node's, as a real peer sends it.
 */
export function toVxlanWire(spec: VxlanSpec, round: number, admitted: string, a: Addressing, v: VxlanAddressing): Wire {
  const receiver = receivingNode(spec);
  const inner: Wire = {
    family: spec.inner.family,
    src: innerSourceAddr(spec, admitted, a, v),
    dst: resolveAddr({ pod: spec.inner.to }, spec.inner.family, a),
    src_mac: nodeAddressing(v, otherNode(receiver)).vtepMac,
    dst_mac: nodeAddressing(v, receiver).vtepMac,
    l4: spec.inner.l4,
    payload: payloadHex(round, spec.n, spec.inner.payload),
    ip_id: spec.inner.family === 4 ? (spec.n % 0xffff) + 1 : ((round & 0xf) << 16) | (spec.n & 0xffff),
  };
  const w: Wire = {
    family: spec.family,
    src: resolveAddr({ pod: spec.from }, spec.family, a),
    dst: vxlanTargetAddr(spec, a, v),
    src_mac: a.mac.get(spec.from)!,
    dst_mac: a.gatewayMac.get(spec.from) ?? 'ff:ff:ff:ff:ff:ff',
    l4: { p: 'udp', sport: spec.sport, dport: VXLAN_PORT },
    payload: '',
    ip_id: spec.family === 4 ? (spec.n % 0xffff) + 1 : ((round & 0xf) << 16) | (spec.n & 0xffff),
    vxlan: { vni: spec.vni === 'cluster' ? v.vni : spec.vni, flags: spec.flags, inner },
  };
  if (spec.frags) {
    w.frags = spec.frags;
    w.frag_id = spec.fragId!;
    if (spec.family === 6) w.ext = ['frag'];
  }
  return w;
}

/**
 * The packet fuzzer's grammar (issue 30): random packets between the model's
 * pods (conformance/netpol/model.ts), reproducible from a seed and a round
 * number alone. Pure: a packet here is a spec in terms of pods, not of
 * addresses, so the same (seed, round) gives the same packets on any
 * cluster; wire.ts turns a spec into what the pod's worker sends.
 *
 * A round has two phases. `open`: packets that start flows (TCP with any
 * flag set, UDP, SCTP INIT, ICMP echo requests, other ICMP), each with any
 * of the shapes the datapath's parser knows: IPv4 options, IPv6 extension
 * chains (hop-by-hop, destination options, fragment, now and then a Routing
 * header, which is dropped by design), fragments (in order, out of order,
 * tiny, overlapping, first only, tail only), truncated transport headers,
 * spoofed source addresses and MACs. `answer`: packets that refer to the open
 * phase's packets: replies from their destination, ICMP errors quoting them
 * (from their receiver, from a third pod, to the wrong end), errors quoting
 * flows that never were, and replies forged by a third pod.
 */
import { PODS } from '../netpol/model.ts';
import { Random } from '../netpol/random.ts';

/** An address family. */
export type Family = 4 | 6;

/** Where a spoofed or quoted address points: a model pod, an unused address of the pod CIDR, the unspecified address, a link-local one (IPv6), or outside the cluster. */
export type AddrRef = { pod: string } | { unused: number } | { unspecified: true } | { linkLocal: true } | { outside: true };

/** A transport header (or ICMP message) of a packet or of the packet an ICMP error quotes. */
export type Transport =
  | { p: 'tcp'; sport: number; dport: number; flags: string; seq: number }
  | { p: 'udp'; sport: number; dport: number }
  | { p: 'sctp'; sport: number; dport: number; chunk: 'init' | 'init-ack' | 'abort'; tag: number }
  | { p: 'echo'; reply: boolean; id: number; seq: number }
  | { p: 'icmp'; type: number; code: number }
  | { p: 'icmp-error'; type: number; code: number; quote: Quote };

/** The packet an ICMP error quotes. */
export interface Quote {
  src: AddrRef;
  dst: AddrRef;
  l4: Extract<Transport, { p: 'tcp' | 'udp' | 'sctp' | 'echo' }>;
}

/** IPv4 options (scapy's names, padded to a 4-byte multiple by the worker). */
export const IPV4_OPTIONS = ['nop', 'eol', 'rr', 'ts', 'lsrr', 'ssrr', 'ra'] as const;
/** An IPv4 option. */
export type Ipv4Option = (typeof IPV4_OPTIONS)[number];
/** IPv6 extension headers: hop-by-hop, destination options, fragment, routing. */
export type Ipv6Ext = 'hbh' | 'dst' | 'frag' | 'rt';

/** One fragment: offset and length in bytes of the datagram's fragmentable part, and the more-fragments bit. */
export type Fragment = [offset: number, length: number, more: boolean];

/** How a datagram was cut into fragments (for the report and for what the oracle expects to vanish). */
export type FragmentPlan = 'in-order' | 'reverse' | 'tiny' | 'overlap' | 'first-only' | 'tail-only' | 'atomic';

/** One packet (a datagram; several frames when fragmented). */
export interface PacketSpec {
  /** Its index in the round. */
  n: number;
  phase: 'open' | 'answer';
  /** The grammar production that made it, for the report. */
  kind: string;
  /** The pod whose namespace sends it. */
  from: string;
  /** The pod it is addressed to. */
  to: string;
  family: Family;
  /** A source address not the sender's own. */
  spoof?: AddrRef;
  /** A source MAC not the sender's own. */
  forgedMac?: boolean;
  ipv4Options?: Ipv4Option[];
  /** IPv6 extension headers in order; 'frag' is where a fragment header goes. */
  ext?: Ipv6Ext[];
  l4: Transport;
  /** Payload bytes after the transport header. */
  payload: number;
  /** Keep only this many bytes of the transport header and nothing after it: malformed. */
  truncate?: number;
  /** Fragments, in the order they are sent. */
  frags?: Fragment[];
  fragPlan?: FragmentPlan;
  /** Fragment identification (IPv4: 16 bits, IPv6: 32). */
  fragId?: number;
  /** The open-phase packet this one answers or quotes. */
  about?: number;
}

/** One frame on the wire: a whole packet or one fragment. */
export interface Frame {
  spec: number;
  index: number;
  /** whole: not fragmented (or an atomic fragment); first: offset 0 with more to come; later: any other. */
  role: 'whole' | 'first' | 'later';
}

/** The transport header's length in bytes, as the parser needs it whole. */
export function transportHeaderBytes(l4: Transport): number {
  switch (l4.p) {
    case 'tcp':
      return 20;
    case 'udp':
    case 'echo':
    case 'icmp':
      return 8;
    case 'sctp':
      return 12 + 20; // common header and an INIT-sized chunk
    case 'icmp-error':
      return 8;
  }
}

/** The frames a packet is sent as, in send order. */
export function framesOf(spec: PacketSpec): Frame[] {
  if (!spec.frags) return [{ spec: spec.n, index: 0, role: 'whole' }];
  return spec.frags.map(([offset, , more], index) => ({ spec: spec.n, index, role: offset === 0 ? (more ? 'first' : 'whole') : 'later' }));
}

/** The IP protocol policy judges a packet as ('icmp' for every ICMP and ICMPv6 message). */
export function protocolOf(l4: Transport): 'tcp' | 'udp' | 'sctp' | 'icmp' {
  return l4.p === 'tcp' || l4.p === 'udp' || l4.p === 'sctp' ? l4.p : 'icmp';
}

const DPORTS = [80, 81, 80, 81, 80, 81, 79, 82, 1, 1000, 1001, 443];
const TCP_FLAGS = ['S', 'S', 'S', 'SA', 'A', 'PA', 'R', 'RA', 'F', 'FA', 'FPU', '', 'SF', 'SR', 'SRAFPUEC', 'SEC'];
const REPLY_TCP_FLAGS = ['SA', 'A', 'PA', 'R', 'RA', 'FA'];
/** ICMP types that are neither echo nor errors (IPv4: timestamp, information, mask, router solicitation, extended echo). */
const OTHER_ICMP4 = [13, 14, 15, 17, 10, 42, 9];
/** ICMPv6 neither echo nor error: neighbour discovery and MLD (never to a pod's routable address), node information, private. */
const OTHER_ICMP6 = [133, 134, 135, 136, 137, 130, 139, 200];
const ERRORS4: [number, number][] = [[3, 3], [3, 1], [3, 4], [11, 0], [12, 0], [4, 0], [5, 1]];
const ERRORS6: [number, number][] = [[1, 4], [1, 1], [2, 0], [3, 0], [4, 0]];

/**
 * Ports and ids of a round, counted per sending pod: fresh for many rounds
 * (55,000 / block; the oracle knows the flows of earlier ones when they come
 * round again).
 */
class Numbering {
  private readonly k = new Map<string, number>();
  private readonly base: number;
  /** `frames`: the round's frames (each pod uses fewer ephemerals than a 9th of them, with room to spare). */
  constructor(round: number, frames: number) {
    this.base = round * Math.max(1000, Math.ceil((frames / PODS.length) * 1.5));
  }
  /** An ephemeral source port (or echo id) of pod `from`, never one of DPORTS. */
  ephemeral(from: string): number {
    const k = this.k.get(from) ?? 0;
    this.k.set(from, k + 1);
    return 10_000 + ((this.base + k) % 55_000);
  }
}

function otherPod(rnd: Random, ...not: string[]): string {
  return rnd.pick(PODS.filter((p) => !not.includes(p)));
}

function spoofRef(rnd: Random, from: string, family: Family): AddrRef {
  const roll = rnd.int(0, 9);
  if (roll <= 4) return { pod: otherPod(rnd, from) };
  if (roll <= 6) return { unused: rnd.int(200, 250) };
  if (roll === 7) return { outside: true };
  return family === 6 && roll === 8 ? { linkLocal: true } : { unspecified: true };
}

function openTransport(rnd: Random, family: Family, num: Numbering, from: string): { l4: Transport; kind: string } {
  const roll = rnd.int(0, 19);
  if (roll <= 7) return { kind: 'tcp', l4: { p: 'tcp', sport: num.ephemeral(from), dport: rnd.pick(DPORTS), flags: rnd.pick(TCP_FLAGS), seq: rnd.int(0, 0xffffffff) } };
  if (roll <= 13) return { kind: 'udp', l4: { p: 'udp', sport: num.ephemeral(from), dport: rnd.pick(DPORTS) } };
  if (roll <= 15) return { kind: 'sctp-init', l4: { p: 'sctp', sport: num.ephemeral(from), dport: rnd.pick(DPORTS), chunk: 'init', tag: rnd.int(1, 0xffffffff) } };
  if (roll <= 18) return { kind: 'echo', l4: { p: 'echo', reply: false, id: num.ephemeral(from), seq: rnd.int(0, 0xffff) } };
  const type = rnd.pick(family === 4 ? OTHER_ICMP4 : OTHER_ICMP6);
  return { kind: `icmp-${type}`, l4: { p: 'icmp', type, code: 0 } };
}

/** The datagram's fragmentable bytes: what follows the IP header (IPv4) or the fragment header (IPv6). */
function fragmentableBytes(spec: PacketSpec): number {
  const ext = spec.ext ?? [];
  const afterFrag = ext.slice(ext.indexOf('frag') + 1).length * 8;
  return afterFrag + (spec.truncate ?? transportHeaderBytes(spec.l4) + spec.payload);
}

function fragmentPlan(rnd: Random, spec: PacketSpec): { plan: FragmentPlan; frags: Fragment[] } {
  const total = fragmentableBytes(spec);
  const plan = rnd.pick(['in-order', 'in-order', 'reverse', 'tiny', 'overlap', 'first-only', 'tail-only'] as const);
  // Pieces of 8-byte multiples (the last takes the rest).
  const piece = plan === 'tiny' ? 8 : 8 * rnd.int(2, 8);
  const cuts: Fragment[] = [];
  for (let off = 0; off < total; off += piece) cuts.push([off, Math.min(piece, total - off), off + piece < total]);
  if (cuts.length < 2) {
    // Too short to cut: all of it with more-fragments set, then an 8-byte last piece past its end (never at 0: that would be a whole datagram of zeros).
    cuts.splice(0, cuts.length, [0, total, true], [Math.max(8, Math.ceil(total / 8) * 8), 8, false]);
  }
  switch (plan) {
    case 'reverse':
      return { plan, frags: [...cuts].reverse() };
    case 'overlap': {
      // A second fragment that starts inside the first (at 8 bytes), rewriting what the first said.
      const [first, ...rest] = cuts;
      return { plan, frags: [first!, [8, Math.max(8, first![1] - 8 + (rest[0]?.[1] ?? 0)), rest.length > 1], ...rest.slice(1)] };
    }
    case 'first-only':
      return { plan, frags: [cuts[0]!] };
    case 'tail-only':
      return { plan, frags: cuts.slice(1) };
    default:
      return { plan, frags: cuts };
  }
}

function ipv6Chain(rnd: Random, fragmented: boolean): Ipv6Ext[] {
  const out: Ipv6Ext[] = [];
  const n = rnd.int(fragmented ? 0 : 1, 3);
  for (let i = 0; i < n; i++) out.push(rnd.chance(0.06) ? 'rt' : rnd.pick(['hbh', 'dst', 'dst', 'frag'] as const));
  // One fragment header at most (two are malformed, and the parser says so; the grammar keeps to one).
  const chain = out.filter((e, i) => e !== 'frag' || out.indexOf('frag') === i);
  if (fragmented && !chain.includes('frag')) chain.splice(rnd.int(0, chain.length), 0, 'frag');
  return chain;
}

/** Shapes that any packet may take: options, extension headers, fragments, spoofing, truncation. */
function shape(rnd: Random, spec: PacketSpec, allowSpoof: boolean): void {
  if (spec.family === 4 && rnd.chance(0.15)) spec.ipv4Options = Array.from({ length: rnd.int(1, 3) }, () => rnd.pick(IPV4_OPTIONS));
  const fragmented = spec.l4.p !== 'icmp-error' && rnd.chance(0.15);
  if (spec.family === 6 && (fragmented || rnd.chance(0.25))) spec.ext = ipv6Chain(rnd, fragmented);
  if (rnd.chance(0.03)) spec.truncate = rnd.int(0, transportHeaderBytes(spec.l4) - 1);
  if (fragmented) {
    if (spec.payload < 24) spec.payload = rnd.int(24, 400);
    const { plan, frags } = fragmentPlan(rnd, spec);
    spec.frags = frags;
    spec.fragPlan = plan;
  } else if (spec.ext?.includes('frag')) {
    spec.fragPlan = 'atomic';
  }
  if (allowSpoof && rnd.chance(0.05)) spec.spoof = spoofRef(rnd, spec.from, spec.family);
  if (allowSpoof && rnd.chance(0.03)) spec.forgedMac = true;
}

function quoteOf(open: PacketSpec): Quote {
  const l4 = open.l4;
  if (l4.p !== 'tcp' && l4.p !== 'udp' && l4.p !== 'sctp' && l4.p !== 'echo') throw new Error(`packet ${open.n} cannot be quoted`);
  return { src: open.spoof ?? { pod: open.from }, dst: { pod: open.to }, l4 };
}

function reverseTransport(rnd: Random, l4: Transport): Transport | null {
  switch (l4.p) {
    case 'tcp':
      return { p: 'tcp', sport: l4.dport, dport: l4.sport, flags: rnd.pick(REPLY_TCP_FLAGS), seq: rnd.int(0, 0xffffffff) };
    case 'udp':
      return { p: 'udp', sport: l4.dport, dport: l4.sport };
    case 'sctp':
      return { p: 'sctp', sport: l4.dport, dport: l4.sport, chunk: rnd.pick(['init-ack', 'abort'] as const), tag: rnd.int(1, 0xffffffff) };
    case 'echo':
      return { p: 'echo', reply: true, id: l4.id, seq: l4.seq };
    default:
      return null;
  }
}

function errorType(rnd: Random, family: Family): [number, number] {
  return rnd.pick(family === 4 ? ERRORS4 : ERRORS6);
}

/** An answer-phase packet about open packet `o`. */
function answer(rnd: Random, n: number, o: PacketSpec, num: Numbering): PacketSpec {
  const base = { n, phase: 'answer' as const, family: o.family, payload: rnd.int(0, 3) * 8, about: o.n };
  const roll = rnd.int(0, 19);
  const rev = reverseTransport(rnd, o.l4);
  if (rev && roll <= 8) {
    // A reply from the packet's destination: passes as the open flow's reply when policy let that flow in.
    const spec: PacketSpec = { ...base, kind: `reply-${rev.p}`, from: o.to, to: o.from, l4: rev };
    shape(rnd, spec, true);
    return spec;
  }
  if (rev && roll <= 10) {
    // The same reply, forged by a third pod with the destination's address.
    return { ...base, kind: `forged-reply-${rev.p}`, from: otherPod(rnd, o.to, o.from), to: o.from, spoof: { pod: o.to }, l4: rev };
  }
  const [type, code] = errorType(rnd, o.family);
  if (rev && roll <= 14) {
    // An error from the receiver of the quoted packet to its sender: related when the flow is open.
    const spec: PacketSpec = { ...base, kind: 'error-from-receiver', from: o.to, to: o.from, l4: { p: 'icmp-error', type, code, quote: quoteOf(o) } };
    shape(rnd, spec, true);
    return spec;
  }
  if (rev && roll <= 16) {
    // A third pod reporting on a packet it never received (and with a payload of its own).
    const third = otherPod(rnd, o.to, o.from);
    return { ...base, kind: 'error-from-third-pod', from: third, to: o.from, payload: 64, l4: { p: 'icmp-error', type, code, quote: quoteOf(o) } };
  }
  if (rev && roll === 17) {
    // An error about the packet, sent to its receiver rather than its sender.
    return { ...base, kind: 'error-to-receiver', from: o.from, to: o.to, l4: { p: 'icmp-error', type, code, quote: quoteOf(o) } };
  }
  // An error quoting a flow that never was, between these two pods.
  const forged: Quote = { src: { pod: o.from }, dst: { pod: o.to }, l4: { p: 'udp', sport: num.ephemeral(o.from), dport: rnd.pick(DPORTS) } };
  return { ...base, kind: 'error-forged-flow', from: o.to, to: o.from, l4: { p: 'icmp-error', type, code, quote: forged } };
}

/** Frames a packet spec sends. */
export function frameCount(spec: PacketSpec): number {
  return spec.frags?.length ?? 1;
}

/**
 * The packets of round `round` of the run seeded `seed`: about `frames`
 * frames, two thirds opening, one third answering. Same arguments, same
 * packets.
 */
export function generateRound(seed: number, round: number, frames: number): PacketSpec[] {
  const rnd = Random.forIteration(seed ^ 0x2f0a17, round);
  const num = new Numbering(round, frames);
  const specs: PacketSpec[] = [];
  let sent = 0;
  let fragId = (round * 977) % 65_536;
  while (sent < (frames * 2) / 3) {
    const from = rnd.pick(PODS);
    const family: Family = rnd.chance(0.6) ? 4 : 6;
    const { l4, kind } = openTransport(rnd, family, num, from);
    const spec: PacketSpec = { n: specs.length, phase: 'open', kind, from, to: otherPod(rnd, from), family, l4, payload: rnd.int(0, 6) * 8 };
    shape(rnd, spec, true);
    if (spec.frags || spec.fragPlan === 'atomic') spec.fragId = family === 4 ? (fragId = (fragId + 1) % 65_536) || 1 : round * 100_000 + spec.n + 1;
    specs.push(spec);
    sent += frameCount(spec);
  }
  const opens = specs.filter((s) => s.l4.p !== 'icmp');
  while (sent < frames && opens.length > 0) {
    const spec = answer(rnd, specs.length, rnd.pick(opens), num);
    if (spec.frags || spec.fragPlan === 'atomic') spec.fragId = spec.family === 4 ? (fragId = (fragId + 1) % 65_536) || 1 : round * 100_000 + spec.n + 1;
    specs.push(spec);
    sent += frameCount(spec);
  }
  return specs;
}

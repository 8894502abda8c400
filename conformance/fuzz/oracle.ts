/**
 * The packet fuzzer's oracle (issue 30): which delivered frames the datapath
 * had no right to deliver. Pure.
 *
 * A frame delivered to a pod (seen on its eth0 by the pod's worker) is
 * justified when:
 * - its packet is no spoof (source address and MAC are the sender's own),
 *   carries no IPv6 Routing header (dropped by design: its real destination
 *   is not the header's), and is not ICMPv6 neighbour discovery or MLD (link
 *   plumbing: never forwarded to a pod's routable address); and
 * - the reference evaluator of conformance/netpol allows its (source pod,
 *   destination pod, protocol, port) as a new flow (every ICMP message is
 *   protocol "icmp", which only rules without ports allow); or it is a reply:
 *   its reverse is a flow some justified packet of the round opened; or
 * - it is an ICMP error (never a flow of its own, so never allowed as a new
 *   one) sent by the receiver of the packet it quotes, to that packet's
 *   sender, about a flow some justified packet of the round opened;
 * - a later fragment (no ports of its own) is judged as its datagram, or as
 *   any earlier datagram with the same identification between the same pods:
 *   the datapath gives it that datagram's first fragment's ports.
 * Anything else delivered is a disagreement: the datapath failed open.
 *
 * "Opened" includes flows of earlier rounds that the current policy still
 * allows (a long run's ports come round again, and conntrack keeps a flow a
 * policy change still allows). "Opened" is lenient on purpose: a justified packet counts as opening its
 * flow even when the worker did not see it arrive (a lost capture must not
 * make a false disagreement), and whatever the order the pods sent in. So
 * the oracle may miss a reply that passed before its flow was open; it never
 * blames the datapath for one that was allowed.
 *
 * The second figure, fail closed: justified frames that should have arrived
 * and did not. Not counted, because the datapath (or the design) drops them
 * for good reason or the outcome depends on what the kernel did meanwhile:
 * truncated transport headers; first fragments too short to hold the
 * transport header; later fragments whose first fragment did not arrive
 * before them (out of order, tail only, first one dropped), and every later
 * fragment of an overlapping datagram (the datapath may drop one that
 * rewrites the TCP header, and the count of bytes seen ends the datagram's
 * entry early); replies and errors whose opening packet did not arrive, or
 * of TCP flows (the receiving kernel's RST may have closed the flow first).
 */
import { allowed } from '../netpol/reference-evaluator.ts';
import type { ClusterState, ModelPod, Protocol } from '../netpol/model.ts';
import { framesOf, protocolOf, transportHeaderBytes, type Frame, type PacketSpec, type Quote, type Transport } from './grammar.ts';

/** The cluster as the evaluator needs it: labels and policies now, and every pod's IPv6 address. */
export interface OracleState {
  state: ClusterState;
  ipv6: Map<string, string>;
}

/** The oracle's verdict on one frame. */
export interface FrameVerdict {
  frame: Frame;
  spec: PacketSpec;
  /** Times the receiving pod saw it. */
  delivered: number;
  justified: boolean;
  /** Why it is (or is not) justified. */
  why: string;
  /** Justified and clean enough that it should have arrived (the fail-closed count). */
  expected: boolean;
}

/** The figures of a round. */
export interface RoundVerdict {
  frames: FrameVerdict[];
  /** Delivered and not justified: the datapath failed open. */
  disagreements: FrameVerdict[];
  /** Expected and not delivered: the datapath failed closed (reported, not a failure). */
  failClosed: FrameVerdict[];
}

/** A key for the frames' delivery counts: "spec.frame". */
export function frameKey(f: Frame): string {
  return `${f.spec}.${f.index}`;
}

/** Flows of earlier rounds remembered: more than a long run opens within any flow's timeout. */
const EARLIER_FLOWS_KEPT = 500_000;
const NEIGHBOUR_DISCOVERY = new Set([130, 131, 132, 133, 134, 135, 136, 137, 143]);

/**
 * Why a frame can never be delivered, whatever the policy; null when it can.
 * Neighbour discovery is recognised by its ICMPv6 header, which a later
 * fragment does not carry: the datapath judges that as ICMP, like the
 * evaluator (README: ND "stays on the link"; a later fragment is no ND).
 */
export function forbiddenByDesign(spec: PacketSpec, role: Frame['role'] = 'whole'): string | null {
  if (spec.spoof) return `spoofed source address ${JSON.stringify(spec.spoof)}`;
  if (spec.forgedMac) return 'forged source MAC';
  if (spec.ext?.includes('rt')) return 'IPv6 Routing header';
  if (role !== 'later' && spec.family === 6 && spec.l4.p === 'icmp' && NEIGHBOUR_DISCOVERY.has(spec.l4.type)) return 'neighbour discovery or MLD to a routable address';
  return null;
}

/** The ports of a transport as conntrack keys them: an echo request is (id, 0), its reply (0, id); other ICMP (type<<8|code) both ways. */
function ports(l4: Transport): [number, number] {
  switch (l4.p) {
    case 'tcp':
    case 'udp':
    case 'sctp':
      return [l4.sport, l4.dport];
    case 'echo':
      return l4.reply ? [0, l4.id] : [l4.id, 0];
    case 'icmp':
    case 'icmp-error':
      return [(l4.type << 8) | l4.code, (l4.type << 8) | l4.code];
  }
}

/** A flow, one direction: "family from>to proto sport>dport". */
function flowKey(family: number, from: string, to: string, l4: Transport): string {
  const [s, d] = ports(l4);
  return `${family} ${from}>${to} ${protocolOf(l4)} ${s}>${d}`;
}

/** The same flow seen the other way round. */
function reverseKey(family: number, from: string, to: string, l4: Transport): string {
  const [s, d] = ports(l4);
  return `${family} ${to}>${from} ${protocolOf(l4)} ${d}>${s}`;
}

function podOf(o: OracleState, ref: string, family: number): ModelPod {
  const pod = o.state.pods.find((p) => `${p.namespace}/${p.name}` === ref);
  if (!pod) throw new Error(`no pod ${ref} in the model`);
  if (family === 4) return pod;
  const ip = o.ipv6.get(ref);
  if (!ip) throw new Error(`no IPv6 address for pod ${ref}`);
  return { ...pod, ip };
}

/** Does the reference evaluator allow the packet as a new flow? */
export function allowedAsNew(spec: PacketSpec, o: OracleState): boolean {
  if (spec.l4.p === 'icmp-error') return false;
  const protocol = protocolOf(spec.l4);
  const port = spec.l4.p === 'tcp' || spec.l4.p === 'udp' || spec.l4.p === 'sctp' ? spec.l4.dport : 0;
  // The evaluator reads the protocol as a string against the rule's (lower-cased); "sctp" and "icmp" work as "tcp" does.
  return allowed({ from: podOf(o, spec.from, spec.family), to: podOf(o, spec.to, spec.family), protocol: protocol as Protocol, port }, o.state);
}

function quotePod(q: Quote['src']): string | null {
  return 'pod' in q ? q.pod : null;
}

/**
 * Run-wide memory: the datagrams whose first fragment was sent, by the key a
 * later fragment is matched on (family, pods, identification), and whether
 * each was justified.
 */
export class Oracle {
  private readonly datagrams = new Map<string, boolean>();
  /** Flows opened in earlier rounds, by flow key: the ports of a long run come round again. */
  private readonly earlier = new Map<string, PacketSpec>();

  /**
   * Is the flow `key` one an earlier round opened that the current policy
   * still allows? Conntrack keeps such a flow across a policy change (it is
   * judged again, in its first direction, and kept), so its packets and
   * errors about it may pass in this round too.
   */
  private openedEarlier(key: string, o: OracleState): boolean {
    const spec = this.earlier.get(key);
    return spec !== undefined && allowedAsNew(spec, o);
  }

  private static datagramKey(spec: PacketSpec): string {
    return `${spec.family} ${JSON.stringify(spec.spoof ?? spec.from)}>${spec.to} ${spec.fragId}`;
  }

  /** Judges a round's frames given how often each was seen (frameKey → count) and the cluster state of the round. */
  judgeRound(specs: PacketSpec[], seen: Map<string, number>, o: OracleState): RoundVerdict {
    // Flows opened in the round: every packet the evaluator allows as new (lenient, see above).
    const opened = new Set<string>();
    const asNew = new Map<number, boolean>();
    for (const spec of specs) {
      const ok = forbiddenByDesign(spec) === null && allowedAsNew(spec, o);
      asNew.set(spec.n, ok);
      if (ok && spec.l4.p !== 'icmp') opened.add(flowKey(spec.family, spec.from, spec.to, spec.l4));
    }
    const delivered = (spec: PacketSpec, index: number) => seen.get(`${spec.n}.${index}`) ?? 0;
    const firstArrived = (spec: PacketSpec) => framesOf(spec).some((f) => f.role !== 'later' && delivered(spec, f.index) > 0);

    const packetVerdict = (spec: PacketSpec, role: Frame['role']): { ok: boolean; why: string; reply?: boolean } => {
      const banned = forbiddenByDesign(spec, role);
      if (banned) return { ok: false, why: banned };
      if (spec.l4.p === 'icmp-error') {
        const q = spec.l4.quote;
        const qsrc = quotePod(q.src);
        const qdst = quotePod(q.dst);
        if (qsrc !== spec.to || qdst !== spec.from) return { ok: false, why: 'ICMP error not from the receiver of the quoted packet to its sender' };
        const keys = [flowKey(spec.family, qsrc, qdst, q.l4), reverseKey(spec.family, qsrc, qdst, q.l4)];
        const related = keys.some((k) => opened.has(k) || this.openedEarlier(k, o));
        return related ? { ok: true, why: 'ICMP error related to an open flow' } : { ok: false, why: 'ICMP error about a flow that is not open' };
      }
      if (asNew.get(spec.n) || (role === 'later' && forbiddenByDesign(spec, 'later') === null && allowedAsNew(spec, o))) return { ok: true, why: 'allowed as a new flow' };
      if (spec.l4.p !== 'icmp' && opened.has(reverseKey(spec.family, spec.from, spec.to, spec.l4))) return { ok: true, why: 'reply of an open flow', reply: true };
      if (spec.l4.p !== 'icmp' && this.openedEarlier(reverseKey(spec.family, spec.from, spec.to, spec.l4), o)) return { ok: true, why: 'reply of a flow an earlier round opened', reply: true };
      return { ok: false, why: `policy denies ${protocolOf(spec.l4)}${ports(spec.l4)[1] ? `/${ports(spec.l4)[1]}` : ''} ${spec.from} -> ${spec.to} (IPv${spec.family})` };
    };

    const frames: FrameVerdict[] = [];
    const byN = new Map(specs.map((s) => [s.n, s]));
    for (const spec of specs) {
      const v = packetVerdict(spec, 'whole');
      const datagram = spec.frags ? Oracle.datagramKey(spec) : null;
      const hadFirst = framesOf(spec).some((f) => f.role === 'first');
      for (const frame of framesOf(spec)) {
        const fv = frame.role === 'later' ? packetVerdict(spec, 'later') : v;
        let justified = fv.ok;
        let why = fv.why;
        if (frame.role === 'later' && !justified && datagram && this.datagrams.get(datagram) === true && forbiddenByDesign(spec, 'later') === null) {
          justified = true;
          why = 'later fragment of an earlier justified datagram with the same identification';
        }
        // A reply sent in the open phase was sent before what opened its flow (the answer phase): it may pass, need not.
        const expected = justified && !(fv.reply && spec.phase === 'open') && this.expected(spec, frame, firstArrived(spec), byN, firstArrived);
        frames.push({ frame, spec, delivered: delivered(spec, frame.index), justified, why, expected });
      }
      if (datagram && hadFirst) this.datagrams.set(datagram, (this.datagrams.get(datagram) ?? false) || v.ok);
    }
    for (const spec of specs) {
      if (asNew.get(spec.n) && spec.l4.p !== 'icmp') this.earlier.set(flowKey(spec.family, spec.from, spec.to, spec.l4), spec);
    }
    // Bounded: the oldest go first (a Map iterates in insertion order).
    for (const key of this.earlier.keys()) {
      if (this.earlier.size <= EARLIER_FLOWS_KEPT) break;
      this.earlier.delete(key);
    }
    return {
      frames,
      disagreements: frames.filter((f) => f.delivered > 0 && !f.justified),
      failClosed: frames.filter((f) => f.expected && f.delivered === 0),
    };
  }

  /** Should a justified frame have arrived? (What the fail-closed count leaves out is listed at the top.) */
  private expected(spec: PacketSpec, frame: Frame, firstArrived: boolean, byN: Map<number, PacketSpec>, arrived: (s: PacketSpec) => boolean): boolean {
    if (spec.truncate !== undefined) return false;
    if (spec.phase === 'answer') {
      const open = spec.about === undefined ? undefined : byN.get(spec.about);
      if (!open || !arrived(open) || open.l4.p === 'tcp') return false;
      if (spec.l4.p === 'icmp-error' && spec.l4.quote.l4.p === 'tcp') return false;
    }
    if (frame.role === 'whole') return true;
    if (frame.role === 'first') {
      const [, length] = spec.frags![frame.index]!;
      const ext = spec.ext ?? [];
      return length >= (ext.length - ext.indexOf('frag') - 1) * 8 + transportHeaderBytes(spec.l4);
    }
    return (spec.fragPlan === 'in-order' || spec.fragPlan === 'tiny') && firstArrived;
  }
}

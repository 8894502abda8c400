/**
 * The VXLAN phase's oracle (issue 30): which delivered frames the datapath
 * had no right to deliver. Pure.
 *
 * - The inner packet of a pod's VXLAN packet is never delivered, to its inner
 *   destination or anywhere: pods never speak VXLAN, and no policy allows a
 *   node to decapsulate what a pod sent. Whatever its forged source, the
 *   admitted peer's included.
 * - The outer packet is delivered only when it is an ordinary UDP datagram to
 *   port 4789 of a pod (the contrast case) that the reference evaluator
 *   allows, and only to that pod. To a node's address or gateway it reaches
 *   no pod.
 *
 * Fail closed (reported, never failing the run): an allowed contrast packet
 * that did not arrive, unless its fragments were sent in reverse (the
 * datapath may drop a later fragment whose first it has not seen).
 */
import { PODS } from '../netpol/model.ts';
import type { PacketSpec } from './grammar.ts';
import { allowedAsNew, type OracleState } from './oracle.ts';
import { VXLAN_PORT, type VxlanSpec } from './vxlan-grammar.ts';

/** The oracle's verdict on one frame of a VXLAN packet, or on its inner packet. */
export interface VxlanFrameVerdict {
  spec: VxlanSpec;
  /** The outer frame's index, or 'inner': the packet inside the tunnel, decapsulated. */
  frame: number | 'inner';
  /** The pods that saw it (a pod once per time). */
  at: string[];
  justified: boolean;
  why: string;
  /** Justified and clean enough that it should have arrived (the fail-closed count). */
  expected: boolean;
}

/** The figures of a round. */
export interface VxlanRoundVerdict {
  frames: VxlanFrameVerdict[];
  /** Delivered and not justified, or delivered elsewhere than its destination: the datapath failed open. */
  disagreements: VxlanFrameVerdict[];
  /** Expected and not delivered. */
  failClosed: VxlanFrameVerdict[];
}

/** A key for the delivery map: "n.i" for outer frame i of packet n, "n.inner" for its inner packet. */
export function vxlanFrameKey(n: number, frame: number | 'inner'): string {
  return `${n}.${frame}`;
}

/** A plain packet spec the evaluator can judge: from a pod to a pod, with this transport. */
function asSpec(n: number, from: string, to: string, family: 4 | 6, l4: PacketSpec['l4']): PacketSpec {
  return { n, phase: 'open', kind: 'vxlan', from, to, family, l4, payload: 0 };
}

/**
 * The pod whose address stands for { admitted: true } in a spec's inner
 * packet: the first model pod (other than the inner destination) that the
 * reference evaluator lets reach it with the inner packet's protocol and
 * port, so that the forgery is one policy would let through; the pod after
 * the destination when none is.
 */
export function admittedSource(spec: VxlanSpec, o: OracleState): string {
  const to = spec.inner.to;
  const found = PODS.find((p) => p !== to && allowedAsNew(asSpec(spec.n, p, to, spec.inner.family, spec.inner.l4), o));
  return found ?? PODS[(PODS.indexOf(to) + 1) % PODS.length]!;
}

/** Does the evaluator allow the outer packet, a UDP datagram to port 4789 of a pod? (Never when it is addressed to a node.) */
export function outerAllowed(spec: VxlanSpec, o: OracleState): boolean {
  if (!('pod' in spec.target)) return false;
  return allowedAsNew(asSpec(spec.n, spec.from, spec.target.pod, spec.family, { p: 'udp', sport: spec.sport, dport: VXLAN_PORT }), o);
}

/** Judges a round's VXLAN packets given where each frame key (vxlanFrameKey) was seen. */
export function judgeVxlanRound(specs: VxlanSpec[], seenAt: Map<string, string[]>, o: OracleState): VxlanRoundVerdict {
  const frames: VxlanFrameVerdict[] = [];
  for (const spec of specs) {
    const inner = seenAt.get(vxlanFrameKey(spec.n, 'inner')) ?? [];
    frames.push({ spec, frame: 'inner', at: inner, justified: false, why: 'the packet inside a pod\'s VXLAN packet was decapsulated and delivered (pods never speak VXLAN)', expected: false });
    const dst = 'pod' in spec.target ? spec.target.pod : null;
    const ok = outerAllowed(spec, o);
    const why = dst
      ? ok
        ? `policy allows udp/${VXLAN_PORT} ${spec.from} -> ${dst} (IPv${spec.family})`
        : `policy denies udp/${VXLAN_PORT} ${spec.from} -> ${dst} (IPv${spec.family})`
      : `UDP to port ${VXLAN_PORT} of a node's ${'node' in spec.target ? spec.target.addr : ''} address reaches no pod`;
    const count = spec.frags?.length ?? 1;
    for (let i = 0; i < count; i++) {
      const at = seenAt.get(vxlanFrameKey(spec.n, i)) ?? [];
      const elsewhere = at.filter((p) => p !== dst);
      frames.push({
        spec,
        frame: i,
        at,
        justified: ok && elsewhere.length === 0,
        why: elsewhere.length > 0 ? `arrived at ${[...new Set(elsewhere)].join(', ')}, not (only) at its destination ${dst ?? '(a node)'}` : why,
        expected: ok && spec.fragPlan !== 'reverse',
      });
    }
  }
  return {
    frames,
    disagreements: frames.filter((f) => f.at.length > 0 && !f.justified),
    failClosed: frames.filter((f) => f.expected && f.at.length === 0),
  };
}

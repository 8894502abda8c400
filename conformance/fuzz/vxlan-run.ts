/**
 * The fuzzer's VXLAN phase (issue 30, "VXLAN toward nodes"), on a two-node
 * VXLAN cluster of its own: round after round, the conformance generator's
 * policy set of that round, then the VXLAN packets of vxlan-grammar.ts from
 * every pod at once, then what every pod saw (the inner packets' receivers
 * included), judged by vxlan-oracle.ts. Each disagreement is printed with
 * what it takes to see it again.
 */
import YAML from 'yaml';
import { generate } from '../netpol/generate.ts';
import { PODS } from '../netpol/model.ts';
import type { FuzzCluster } from './cluster.ts';
import { reset } from './run.ts';
import { generateVxlanRound, nodeOfPod, type VxlanSpec } from './vxlan-grammar.ts';
import { admittedSource, judgeVxlanRound, vxlanFrameKey, type VxlanFrameVerdict } from './vxlan-oracle.ts';
import { toVxlanWire, type Wire } from './wire.ts';

/** What to run. */
export interface VxlanRunOptions {
  seed: number;
  /** Outer frames to send in all (the phase stops at the first round that reaches it). */
  packets: number;
  perRound: number;
  startRound: number;
  /** Replay: only this packet of startRound, one round. */
  packet?: number;
  /** The command that runs this fuzzer, for reproducers. */
  command: string;
  verbose?: boolean;
  log: (line: string) => void;
}

/** A disagreement with everything needed to see it again. */
export interface VxlanDisagreement {
  seed: number;
  round: number;
  verdict: VxlanFrameVerdict;
  reproducer: string;
}

/** The phase's figures. */
export interface VxlanSummary {
  rounds: number;
  /** VXLAN packets and their outer frames sent. */
  packets: number;
  sent: number;
  /** Packets addressed to a node's address or gateway (not to a pod). */
  toNodes: number;
  outerDelivered: number;
  outerJustified: number;
  innerDelivered: number;
  disagreements: VxlanDisagreement[];
  failClosed: number;
  ms: number;
}

function describe(v: VxlanFrameVerdict): string {
  const s = v.spec;
  const what = v.frame === 'inner' ? `inner IPv${s.inner.family} ${s.inner.l4.p} to ${s.inner.to}` : `outer IPv${s.family} frame ${v.frame + 1}/${s.frags?.length ?? 1}${s.fragPlan ? ` (${s.fragPlan})` : ''}`;
  return `${s.kind} from ${s.from} (${nodeOfPod(s.from)}), ${what}, seen at ${v.at.join(', ') || 'nowhere'}: ${v.why}`;
}

/** Runs the VXLAN phase on an up VXLAN cluster. */
export async function fuzzVxlan(cluster: FuzzCluster, o: VxlanRunOptions): Promise<VxlanSummary> {
  const vx = cluster.vxlan;
  if (!vx) throw new Error('the VXLAN phase needs a two-node VXLAN cluster');
  const started = Date.now();
  const sum: VxlanSummary = { rounds: 0, packets: 0, sent: 0, toNodes: 0, outerDelivered: 0, outerJustified: 0, innerDelivered: 0, disagreements: [], failClosed: 0, ms: 0 };
  const ctx = { ip: (pod: string) => cluster.addressing.ipv4.get(pod)!, podCIDR: cluster.podCIDR };
  for (let round = o.startRound; o.packet !== undefined ? round === o.startRound : sum.sent < o.packets; round++) {
    await reset(cluster);
    const g = generate(o.seed, round, ctx);
    await cluster.apply([...g.relabels, ...g.policies]);
    const all = generateVxlanRound(o.seed, round, o.perRound);
    const specs = o.packet !== undefined ? all.filter((s) => s.n === o.packet) : all;
    if (specs.length === 0) throw new Error(`VXLAN round ${round} has no packet ${o.packet} (it has ${all.length})`);
    const state = { state: cluster.current(), ipv6: cluster.addressing.ipv6 };

    const wires = new Map<number, Wire>();
    const admitted = new Map<number, string>();
    const byPod = new Map<string, VxlanSpec[]>();
    for (const s of specs) {
      admitted.set(s.n, admittedSource(s, state));
      wires.set(s.n, toVxlanWire(s, round, admitted.get(s.n)!, cluster.addressing, vx));
      byPod.set(s.from, [...(byPod.get(s.from) ?? []), s]);
    }
    const sent = await cluster.send(new Map([...byPod].map(([pod, ss]) => [pod, ss.map((s) => wires.get(s.n)!)])));
    const byHash = new Map<string, string>();
    for (const [pod, ss] of byPod) {
      ss.forEach((s, i) => {
        const keys = sent.get(pod)![i]!;
        keys.frames.forEach((h, f) => byHash.set(h, vxlanFrameKey(s.n, f)));
        if (keys.inner) byHash.set(keys.inner, vxlanFrameKey(s.n, 'inner'));
      });
    }
    const seenAt = new Map<string, string[]>();
    for (const [pod, hashes] of await cluster.seen()) {
      for (const [h, count] of Object.entries(hashes)) {
        const key = byHash.get(h);
        if (key) seenAt.set(key, [...(seenAt.get(key) ?? []), ...Array<string>(count).fill(pod)]);
      }
    }
    const verdict = judgeVxlanRound(specs, seenAt, state);

    sum.rounds++;
    sum.packets += specs.length;
    const outer = verdict.frames.filter((v) => v.frame !== 'inner');
    sum.sent += outer.length;
    sum.toNodes += specs.filter((s) => !('pod' in s.target)).length;
    sum.outerDelivered += outer.filter((v) => v.at.length > 0).length;
    sum.outerJustified += outer.filter((v) => v.at.length > 0 && v.justified).length;
    const innerDelivered = verdict.frames.filter((v) => v.frame === 'inner' && v.at.length > 0).length;
    sum.innerDelivered += innerDelivered;
    sum.failClosed += verdict.failClosed.length;

    const relabels = g.relabels.map((m) => `    ${m.kind === 'Pod' ? `pod ${m.metadata.namespace}/${m.metadata.name}` : `namespace ${m.metadata.name}`} labels ${JSON.stringify((m.metadata as { labels?: object }).labels)}`);
    const policies = [...relabels, YAML.stringify(g.policies).replace(/^/gm, '    ').trimEnd()].join('\n');
    const nodes = [...vx.nodes].map(([name, n]) => `${name}=${n.address} (gateways ${n.gateway4}, ${n.gateway6}; VXLAN device ${n.vtepMac})`).join(' ');
    for (const v of verdict.disagreements) {
      const d: VxlanDisagreement = {
        seed: o.seed,
        round,
        verdict: v,
        reproducer: [
          `seed ${o.seed}, VXLAN round ${round}, packet ${v.spec.n}, ${v.frame === 'inner' ? 'inner packet' : `frame ${v.frame}`} (seen ${v.at.length}x at ${v.at.join(', ')})`,
          `replay: ${o.command} --seed ${o.seed} --vxlan-per-round ${o.perRound} --round ${round} --packet ${v.spec.n}`,
          `packet spec: ${JSON.stringify(v.spec)}`,
          `as sent: ${JSON.stringify(wires.get(v.spec.n))}`,
          `the admitted peer this round: ${admitted.get(v.spec.n)}`,
          `nodes: ${nodes}, VNI ${vx.vni}`,
          `pods: ${PODS.map((p) => `${p}@${nodeOfPod(p)}=${cluster.addressing.ipv4.get(p)},${cluster.addressing.ipv6.get(p)}`).join(' ')}`,
          'relabels and policies of the round:',
          policies,
        ].join('\n'),
      };
      sum.disagreements.push(d);
      o.log(`DISAGREEMENT (VXLAN) ${describe(v)}\n${d.reproducer.replace(/^/gm, '  ')}`);
    }
    o.log(
      `vxlan round ${round}: ${g.policies.length} policies${g.relabels.length ? `, ${g.relabels.length} relabels` : ''}; ${specs.length} packets, ${outer.length} frames, ` +
        `${outer.filter((v) => v.at.length > 0).length} outer delivered, ${innerDelivered} inner delivered, ${verdict.disagreements.length} disagreements, ${verdict.failClosed.length} fail closed`,
    );
    if (o.verbose) for (const v of verdict.failClosed) o.log(`  fail closed: VXLAN round ${round} packet ${v.spec.n} frame ${v.frame}: ${describe(v)} ${JSON.stringify(v.spec)}`);
    if (o.packet !== undefined) {
      for (const v of verdict.frames) o.log(`  packet ${v.spec.n} ${v.frame === 'inner' ? 'inner' : `frame ${v.frame}`}: ${v.at.length ? `delivered ${v.at.length}x` : 'not delivered'}; oracle: ${v.justified ? 'may pass' : 'must not pass'} (${describe(v)})`);
    }
  }
  sum.ms = Date.now() - started;
  return sum;
}

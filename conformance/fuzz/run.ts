/**
 * The fuzzer's run: round after round, the conformance generator's policy
 * set of that round (conformance/netpol/generate.ts, the same seed), then the
 * grammar's packets of that round from every pod at once (open phase, then
 * answer phase), then what every pod saw, judged by the oracle. Each
 * disagreement is printed with what it takes to see it again.
 */
import YAML from 'yaml';
import { generate } from '../netpol/generate.ts';
import { PODS, baseNamespaceLabels, basePodLabels, namespaceManifest, podManifest } from '../netpol/model.ts';
import type { Manifest } from '../netpol/types.ts';
import type { FuzzCluster } from './cluster.ts';
import { framesOf, generateRound, type PacketSpec } from './grammar.ts';
import { Oracle, frameKey, type FrameVerdict } from './oracle.ts';
import { knownIssueOf, type KnownIssue } from './known.ts';
import { toWire } from './wire.ts';

/** What to run. */
export interface RunOptions {
  seed: number;
  /** Frames to send in all (the run stops at the first round that reaches it). */
  packets: number;
  /** Frames per round (one policy set each). */
  perRound: number;
  /** The first round. */
  startRound: number;
  /** Replay: only this packet of startRound (and the packet it answers), one round. */
  packet?: number;
  /** The command that runs this fuzzer, for reproducers. */
  command: string;
  /** Print every fail-closed frame too. */
  verbose?: boolean;
  log: (line: string) => void;
}

/** A disagreement with everything needed to see it again. */
export interface Disagreement {
  /** The filed bug it shows (known.ts), if any. */
  known?: KnownIssue;
  seed: number;
  round: number;
  verdict: FrameVerdict;
  /** Where it arrived, when not at its destination only. */
  at: string[];
  reproducer: string;
}

/** The run's figures. */
export interface RunSummary {
  rounds: number;
  sent: number;
  delivered: number;
  justified: number;
  /** Disagreements that match no known issue: these fail the run. */
  disagreements: Disagreement[];
  /** Disagreements of known issues (known.ts), by issue id. */
  known: Map<string, Disagreement[]>;
  failClosed: number;
  failClosedByKind: Map<string, number>;
  ms: number;
}

const sameLabels = (a: Record<string, string>, b: Record<string, string>) => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
const SETTLE_MS = 60;

/** Back to the model's base: no policies, base labels. */
export async function reset(cluster: FuzzCluster): Promise<void> {
  const s = cluster.current();
  await cluster.delete(s.policies.map((p) => ({ kind: 'NetworkPolicy' as const, namespace: p.metadata.namespace, name: p.metadata.name })));
  const restore: Manifest[] = [];
  for (const [ns, labels] of s.namespaces) if (!sameLabels(labels, baseNamespaceLabels(ns))) restore.push(namespaceManifest(ns));
  for (const pod of s.pods) if (!sameLabels(pod.labels, basePodLabels(pod.name))) restore.push(podManifest(`${pod.namespace}/${pod.name}`));
  if (restore.length > 0) await cluster.apply(restore);
}

/** The specs of a replay: the packet, and the one it answers or quotes. */
function replaySpecs(specs: PacketSpec[], n: number): PacketSpec[] {
  const target = specs.find((s) => s.n === n);
  if (!target) throw new Error(`round has no packet ${n} (it has ${specs.length})`);
  const about = target.about === undefined ? undefined : specs.find((s) => s.n === target.about);
  return about ? [about, target] : [target];
}

/** Sends one phase's packets (every pod at once); frame key of each hash. */
async function sendPhase(cluster: FuzzCluster, specs: PacketSpec[], round: number, byHash: Map<string, string>, ambiguous: Set<string>): Promise<void> {
  const byPod = new Map<string, PacketSpec[]>();
  for (const s of specs) byPod.set(s.from, [...(byPod.get(s.from) ?? []), s]);
  const hashes = await cluster.send(new Map([...byPod].map(([pod, ss]) => [pod, ss.map((s) => toWire(s, round, cluster.addressing))])));
  for (const [pod, ss] of byPod) {
    const keys = hashes.get(pod)!;
    ss.forEach((s, i) =>
      framesOf(s).forEach((f) => {
        const h = keys[i]!.frames[f.index]!;
        // Two frames of the same bytes (the grammar avoids it): which one arrived cannot be told, so neither is judged.
        if (byHash.has(h) && byHash.get(h) !== frameKey(f)) ambiguous.add(h);
        byHash.set(h, frameKey(f));
      }),
    );
  }
}

function describe(v: FrameVerdict): string {
  const s = v.spec;
  const frag = s.frags ? ` fragment ${v.frame.index + 1}/${s.frags.length} (${s.fragPlan}, ${v.frame.role})` : '';
  return `${s.kind} IPv${s.family} ${s.from} -> ${s.to}${frag}: ${v.why}`;
}

/** Runs the fuzzer on an up cluster. */
export async function fuzz(cluster: FuzzCluster, o: RunOptions): Promise<RunSummary> {
  const started = Date.now();
  const oracle = new Oracle();
  const sum: RunSummary = { rounds: 0, sent: 0, delivered: 0, justified: 0, disagreements: [], known: new Map(), failClosed: 0, failClosedByKind: new Map(), ms: 0 };
  const ctx = { ip: (pod: string) => cluster.addressing.ipv4.get(pod)!, podCIDR: cluster.podCIDR };
  for (let round = o.startRound; o.packet !== undefined ? round === o.startRound : sum.sent < o.packets; round++) {
    await reset(cluster);
    const g = generate(o.seed, round, ctx);
    await cluster.apply([...g.relabels, ...g.policies]);
    const all = generateRound(o.seed, round, o.perRound);
    const specs = o.packet !== undefined ? replaySpecs(all, o.packet) : all;
    const byHash = new Map<string, string>();
    const ambiguous = new Set<string>();
    await sendPhase(cluster, specs.filter((s) => s.phase === 'open'), round, byHash, ambiguous);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    await sendPhase(cluster, specs.filter((s) => s.phase === 'answer'), round, byHash, ambiguous);
    if (ambiguous.size > 0) o.log(`round ${round}: ${ambiguous.size} frames not judged: another frame of the round has the same bytes`);
    for (const h of ambiguous) byHash.delete(h);
    const seenBy = await cluster.seen();

    // Delivery counts, and where each frame arrived.
    const seen = new Map<string, number>();
    const at = new Map<string, string[]>();
    for (const [pod, hashes] of seenBy) {
      for (const [h, count] of Object.entries(hashes)) {
        const key = byHash.get(h);
        if (!key) continue; // not ours: the pods' own kernels answering (RSTs, port unreachables, echo replies)
        seen.set(key, (seen.get(key) ?? 0) + count);
        at.set(key, [...(at.get(key) ?? []), pod]);
      }
    }
    const verdict = oracle.judgeRound(specs, seen, { state: cluster.current(), ipv6: cluster.addressing.ipv6 });
    // A frame seen by a pod it was not addressed to is a disagreement whatever the policy.
    const misdelivered = verdict.frames.filter((v) => (at.get(frameKey(v.frame)) ?? []).some((p) => p !== v.spec.to) && !verdict.disagreements.includes(v));
    for (const v of misdelivered) v.why = `arrived at ${at.get(frameKey(v.frame))!.join(', ')}, not (only) at its destination ${v.spec.to}`;

    sum.rounds++;
    const frames = verdict.frames.length;
    sum.sent += frames;
    sum.delivered += verdict.frames.filter((v) => v.delivered > 0).length;
    sum.justified += verdict.frames.filter((v) => v.justified).length;
    sum.failClosed += verdict.failClosed.length;
    for (const v of verdict.failClosed) sum.failClosedByKind.set(v.spec.kind, (sum.failClosedByKind.get(v.spec.kind) ?? 0) + 1);
    const relabels = g.relabels.map((m) => `    ${m.kind === "Pod" ? `pod ${m.metadata.namespace}/${m.metadata.name}` : `namespace ${m.metadata.name}`} labels ${JSON.stringify((m.metadata as { labels?: object }).labels)}`);
    const policies = [...relabels, YAML.stringify(g.policies).replace(/^/gm, '    ').trimEnd()].join('\n');
    let roundKnown = 0;
    for (const v of [...verdict.disagreements, ...misdelivered]) {
      const known = misdelivered.includes(v) ? undefined : knownIssueOf(v);
      const d: Disagreement = {
        ...(known ? { known } : {}),
        seed: o.seed,
        round,
        verdict: v,
        at: at.get(frameKey(v.frame)) ?? [],
        reproducer: [
          `seed ${o.seed}, round ${round}, packet ${v.spec.n}, frame ${v.frame.index} (delivered ${v.delivered}x at ${(at.get(frameKey(v.frame)) ?? []).join(', ')})`,
          `replay: ${o.command} --seed ${o.seed} --per-round ${o.perRound} --round ${round} --packet ${v.spec.n}`,
          `or, when it needs what earlier rounds left (conntrack, fragments): ${o.command} --seed ${o.seed} --per-round ${o.perRound} --packets ${(round + 1) * o.perRound}`,
          `packet spec: ${JSON.stringify(v.spec)}`,
          `as sent: ${JSON.stringify(toWire(v.spec, round, cluster.addressing))}`,
          ...(v.spec.about !== undefined ? [`answers: ${JSON.stringify(specs.find((s) => s.n === v.spec.about))}`] : []),
          `addresses: ${PODS.map((p) => `${p}=${cluster.addressing.ipv4.get(p)},${cluster.addressing.ipv6.get(p)}`).join(' ')}`,
          'relabels and policies of the round:',
          policies,
        ].join('\n'),
      };
      if (known) {
        // A filed bug: its first reproducer in full, then only counted.
        const seenBefore = sum.known.get(known.id) ?? [];
        sum.known.set(known.id, [...seenBefore, d]);
        roundKnown++;
        if (seenBefore.length === 0 || o.packet !== undefined) o.log(`KNOWN ISSUE ${known.id} (${known.title}): ${describe(v)}\n${d.reproducer.replace(/^/gm, '  ')}`);
        continue;
      }
      sum.disagreements.push(d);
      o.log(`DISAGREEMENT ${describe(v)}\n${d.reproducer.replace(/^/gm, '  ')}`);
    }
    o.log(
      `round ${round}: ${g.policies.length} policies${g.relabels.length ? `, ${g.relabels.length} relabels` : ''}; ${specs.length} packets, ${frames} frames, ` +
        `${verdict.frames.filter((v) => v.delivered > 0).length} delivered, ${verdict.disagreements.length + misdelivered.length - roundKnown} disagreements${roundKnown ? ` (+${roundKnown} of known issues)` : ''}, ${verdict.failClosed.length} fail closed`,
    );
    if (o.verbose) for (const v of verdict.failClosed) o.log(`  fail closed: round ${round} packet ${v.spec.n} frame ${v.frame.index}: ${describe(v)} ${JSON.stringify(v.spec)}`);
    if (o.packet !== undefined) {
      for (const v of verdict.frames) o.log(`  packet ${v.spec.n} frame ${v.frame.index}: ${v.delivered ? `delivered ${v.delivered}x` : 'not delivered'}; oracle: ${v.justified ? 'may pass' : 'must not pass'} (${describe(v)})`);
    }
  }
  sum.ms = Date.now() - started;
  return sum;
}

/**
 * The datapath packet fuzzer (issue 30): random packets from random pods
 * under random policies, on a local cluster of its own, each delivered packet
 * checked against the reference evaluator of conformance/netpol. Two phases:
 * every header shape on one node, then VXLAN toward nodes on two nodes with a
 * VXLAN overlay (vxlan-run.ts). Prints each disagreement with a reproducer,
 * then the figures; the last line is always "N disagreements" (those of no
 * known issue, known.ts, in both phases); exits 1 when there was any (or the
 * run failed).
 *
 * usage: node conformance/fuzz/main.ts [--packets N] [--seed S] [--per-round N]
 *          [--vxlan-packets N] [--vxlan-per-round N] [--phase both|single|vxlan]
 *          [--round R] [--packet N]
 */
import { parseArgs } from 'node:util';
import { errorMessage } from '../../lib/errors.ts';
import { FuzzCluster } from './cluster.ts';
import { KNOWN_ISSUES } from './known.ts';
import { fuzz, type RunSummary } from './run.ts';
import { fuzzVxlan, type VxlanSummary } from './vxlan-run.ts';

const USAGE = `usage: node conformance/fuzz/main.ts [options]
  --packets N          frames to send in all on one node (default 3000)
  --seed S             seed of the policy sets and the packets (default 1)
  --per-round N        frames per round, one random policy set each (default 600)
  --vxlan-packets N    VXLAN packets' frames to send on two nodes (default: a tenth of --packets, at least 300)
  --vxlan-per-round N  VXLAN frames per round (default 300)
  --phase P            both (default), single (one node only) or vxlan (two nodes only)
  --round R            first round (default 0)
  --packet N           replay: only packet N of round R (and the packet it answers); of the VXLAN phase with --phase vxlan
  --verbose            also print every frame that should have arrived and did not (fail closed)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      packets: { type: 'string', default: '3000' },
      seed: { type: 'string', default: '1' },
      'per-round': { type: 'string', default: '600' },
      'vxlan-packets': { type: 'string' },
      'vxlan-per-round': { type: 'string', default: '300' },
      phase: { type: 'string', default: 'both' },
      round: { type: 'string', default: '0' },
      packet: { type: 'string' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const n = (flag: string, v: string | undefined) => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < 0) throw new Error(`--${flag} must be a non-negative integer`);
    return x;
  };
  const packets = n('packets', values.packets);
  const seed = n('seed', values.seed);
  const perRound = Math.max(1, n('per-round', values['per-round']));
  const startRound = n('round', values.round);
  const packet = values.packet === undefined ? undefined : n('packet', values.packet);
  const vxlanPackets = values['vxlan-packets'] === undefined ? Math.max(300, Math.round(packets / 10)) : n('vxlan-packets', values['vxlan-packets']);
  const vxlanPerRound = Math.max(1, n('vxlan-per-round', values['vxlan-per-round']));
  const phase = values.phase;
  if (phase !== 'both' && phase !== 'single' && phase !== 'vxlan') throw new Error('--phase must be both, single or vxlan');
  // A replay is of one phase: the one-node phase unless --phase vxlan says otherwise.
  const single = phase !== 'vxlan' && (packet !== undefined || packets > 0);
  const vxlan = phase !== 'single' && (packet !== undefined ? phase === 'vxlan' : vxlanPackets > 0);

  // The cluster of the phase under way, removed on Ctrl-C.
  let cluster: FuzzCluster | null = null;
  const stop = async (signal: string) => {
    console.error(`${signal}: removing the cluster`);
    await cluster?.teardown();
    process.exit(130);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));

  const started = Date.now();
  const command = 'node conformance/fuzz/main.ts';
  const log = (l: string) => console.log(l);
  let summary: RunSummary | null = null;
  let vxSummary: VxlanSummary | null = null;
  let failed = '';
  /** Brings a cluster up, runs a phase on it, removes it whatever happened. */
  const phaseOn = async <T>(c: FuzzCluster, label: string, body: (c: FuzzCluster) => Promise<T>): Promise<T | null> => {
    cluster = c;
    const t0 = Date.now();
    try {
      await c.up();
      console.log(`${label} ${c.name} up in ${((Date.now() - t0) / 1000).toFixed(1)} s: pod CIDRs ${c.podCIDR} ${c.podCIDR6}`);
      return await body(c);
    } catch (err: unknown) {
      failed = errorMessage(err);
      console.log(`FAIL fuzzer set-up or run (${label}): ${failed}`);
      return null;
    } finally {
      for (const p of await c.teardown()) console.error(`clean-up: ${p}`);
      cluster = null;
    }
  };
  if (single) {
    summary = await phaseOn(new FuzzCluster(), 'cluster', (c) =>
      fuzz(c, { seed, packets, perRound, startRound, ...(packet !== undefined ? { packet } : {}), command: `${command} --phase single`, verbose: values.verbose === true, log }),
    );
  }
  if (vxlan && !failed) {
    vxSummary = await phaseOn(new FuzzCluster({ vxlan: true }), 'vxlan cluster', (c) =>
      fuzzVxlan(c, { seed, packets: vxlanPackets, perRound: vxlanPerRound, startRound, ...(packet !== undefined ? { packet } : {}), command: `${command} --phase vxlan`, verbose: values.verbose === true, log }),
    );
  }
  if ((single && !summary) || (vxlan && !vxSummary)) {
    console.log('run failed: no figures');
    return 1;
  }
  let disagreements = 0;
  if (summary) {
    const s = summary;
    const secs = s.ms / 1000;
    console.log(`seed ${seed}, rounds ${startRound}..${startRound + s.rounds - 1}, ${perRound} frames a round`);
    console.log(`sent ${s.sent} frames, delivered ${s.delivered}, justified ${s.justified}, in ${secs.toFixed(1)} s (${Math.round(s.sent / secs)} frames/s)`);
    const kinds = [...s.failClosedByKind].sort((a, b) => b[1] - a[1]).map(([k, c]) => `${k} ${c}`);
    console.log(`fail closed (justified, expected, not delivered; reported only): ${s.failClosed}${kinds.length ? ` (${kinds.join(', ')})` : ''}`);
    for (const k of KNOWN_ISSUES) {
      const found = s.known.get(k.id) ?? [];
      console.log(found.length > 0 ? `known issue ${k.id}: ${found.length} frames (${k.title})` : `known issue ${k.id}: not seen in this run (once the run that reproduces it no longer does, remove it from conformance/fuzz/known.ts)`);
    }
    disagreements += s.disagreements.length;
  }
  if (vxSummary) {
    const v = vxSummary;
    const secs = v.ms / 1000;
    console.log(`vxlan: seed ${seed}, rounds ${startRound}..${startRound + v.rounds - 1}, ${vxlanPerRound} frames a round`);
    console.log(
      `vxlan: sent ${v.packets} packets (${v.toNodes} to nodes and gateways, the rest to pods) in ${v.sent} frames, outer delivered ${v.outerDelivered}, justified ${v.outerJustified}, inner delivered ${v.innerDelivered}, in ${secs.toFixed(1)} s (${Math.round(v.sent / secs)} frames/s)`,
    );
    console.log(`vxlan: fail closed (allowed to a pod, not delivered; reported only): ${v.failClosed}`);
    console.log(`vxlan: ${v.disagreements.length} disagreements`);
    disagreements += v.disagreements.length;
  }
  console.log(`total with set-up ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`${disagreements} disagreements`);
  return disagreements === 0 && !failed ? 0 : 1;
}

process.exitCode = await main();

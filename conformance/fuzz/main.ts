/**
 * The datapath packet fuzzer (issue 30): random packets from random pods
 * under random policies, on a local cluster of its own, each delivered packet
 * checked against the reference evaluator of conformance/netpol. Prints each
 * disagreement with a reproducer, then the figures; the last line is always
 * "N disagreements" (those of no known issue, known.ts); exits 1 when there
 * was any (or the run failed).
 *
 * usage: node conformance/fuzz/main.ts [--packets N] [--seed S] [--per-round N]
 *          [--round R] [--packet N]
 */
import { parseArgs } from 'node:util';
import { errorMessage } from '../../lib/errors.ts';
import { FuzzCluster } from './cluster.ts';
import { KNOWN_ISSUES } from './known.ts';
import { fuzz, type RunSummary } from './run.ts';

const USAGE = `usage: node conformance/fuzz/main.ts [options]
  --packets N     frames to send in all (default 3000)
  --seed S        seed of the policy sets and the packets (default 1)
  --per-round N   frames per round, one random policy set each (default 600)
  --round R       first round (default 0)
  --packet N      replay: only packet N of round R (and the packet it answers)
  --verbose       also print every frame that should have arrived and did not (fail closed)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      packets: { type: 'string', default: '3000' },
      seed: { type: 'string', default: '1' },
      'per-round': { type: 'string', default: '600' },
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

  const cluster = new FuzzCluster();
  const stop = async (signal: string) => {
    console.error(`${signal}: removing the cluster`);
    await cluster.teardown();
    process.exit(130);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));

  const started = Date.now();
  let summary: RunSummary | null = null;
  let failed = '';
  try {
    await cluster.up();
    console.log(`cluster ${cluster.name} up in ${((Date.now() - started) / 1000).toFixed(1)} s: pod CIDRs ${cluster.podCIDR} ${cluster.podCIDR6}`);
    summary = await fuzz(cluster, { seed, packets, perRound, startRound, ...(packet !== undefined ? { packet } : {}), command: 'node conformance/fuzz/main.ts', verbose: values.verbose === true, log: (l) => console.log(l) });
  } catch (err: unknown) {
    failed = errorMessage(err);
    console.log(`FAIL fuzzer set-up or run: ${failed}`);
  } finally {
    for (const p of await cluster.teardown()) console.error(`clean-up: ${p}`);
  }
  if (!summary) {
    console.log('run failed: no figures');
    return 1;
  }
  const s = summary;
  const secs = s.ms / 1000;
  console.log(`seed ${seed}, rounds ${startRound}..${startRound + s.rounds - 1}, ${perRound} frames a round`);
  console.log(`sent ${s.sent} frames, delivered ${s.delivered}, justified ${s.justified}, in ${secs.toFixed(1)} s (${Math.round(s.sent / secs)} frames/s; total with set-up ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  const kinds = [...s.failClosedByKind].sort((a, b) => b[1] - a[1]).map(([k, c]) => `${k} ${c}`);
  console.log(`fail closed (justified, expected, not delivered; reported only): ${s.failClosed}${kinds.length ? ` (${kinds.join(', ')})` : ''}`);
  for (const k of KNOWN_ISSUES) {
    const found = s.known.get(k.id) ?? [];
    console.log(found.length > 0 ? `known issue ${k.id}: ${found.length} frames (${k.title})` : `known issue ${k.id}: not seen in this run (once the run that reproduces it no longer does, remove it from conformance/fuzz/known.ts)`);
  }
  console.log(`${s.disagreements.length} disagreements`);
  return s.disagreements.length === 0 && !failed ? 0 : 1;
}

process.exitCode = await main();

/**
 * The kernel's own accounting of BPF programs (kernel.bpf_stats_enabled):
 * run counts and run time of pinned programs, switched on for a measurement
 * and put back as it was, also when the bench fails. Shared by the overhead
 * benchmarks.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { onCleanup } from './cleanup.ts';

const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

/** Runs and nanoseconds of each program so far. */
export type ProgStats<N extends string = string> = Record<N, { runs: number; ns: number }>;

/** Run count and run time of the programs pinned as progsDir/<name> (statistics must be on). */
export function progStats<N extends string>(progsDir: string, names: readonly N[]): ProgStats<N> {
  const out = {} as ProgStats<N>;
  for (const name of names) {
    const r = spawnSync('bpftool', ['prog', 'show', 'pinned', path.join(progsDir, name), '-j'], { encoding: 'utf8' });
    const j = JSON.parse(r.stdout) as { run_cnt?: number; run_time_ns?: number };
    out[name] = { runs: j.run_cnt ?? 0, ns: j.run_time_ns ?? 0 };
  }
  return out;
}

/** What ran between two readings. */
export function diffStats<N extends string>(a: ProgStats<N>, b: ProgStats<N>): ProgStats<N> {
  return Object.fromEntries((Object.keys(a) as N[]).map((n) => [n, { runs: b[n].runs - a[n].runs, ns: b[n].ns - a[n].ns }])) as ProgStats<N>;
}

/** Runs measure with the kernel's BPF statistics on, then puts the setting back (also on failure, via cleanup). */
export function withBpfStats<T>(measure: () => T): T {
  const was = fs.readFileSync(BPF_STATS, 'utf8').trim();
  onCleanup(`${BPF_STATS} back to ${was}`, () => fs.writeFileSync(BPF_STATS, was));
  fs.writeFileSync(BPF_STATS, '1');
  try {
    return measure();
  } finally {
    fs.writeFileSync(BPF_STATS, was);
  }
}

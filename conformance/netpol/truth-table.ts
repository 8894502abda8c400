/**
 * Prints expected against observed reachability as truth tables a person can
 * read: rows are sources, columns destinations; "." connects, "X" is blocked,
 * and the comparison marks "+" a connection that got through but should not
 * (a hole) and "-" one that was blocked but should not be.
 */
import { PODS, type Combo } from './model.ts';
import type { Reachability } from './reachability.ts';

const COLUMN_WIDTH = 4;
const ROW_LABEL_WIDTH = 5;

function grid(title: string, cell: (from: string, to: string) => string): string[] {
  const pad = (s: string) => s.padEnd(COLUMN_WIDTH);
  const lines = [title.padEnd(ROW_LABEL_WIDTH) + PODS.map(pad).join('')];
  for (const from of PODS) lines.push(from.padEnd(ROW_LABEL_WIDTH) + PODS.map((to) => pad(cell(from, to))).join(''));
  return lines;
}

/** Expected | observed | comparison for one combo, side by side. */
export function truthTable(combo: Combo, expected: Reachability, observed: Reachability): string {
  const mark = (ok: boolean) => (ok ? '.' : 'X');
  const exp = grid('exp', (f, t) => (f === t ? '~' : mark(expected.get(combo, f, t))));
  const obs = grid('obs', (f, t) => mark(observed.get(combo, f, t)));
  const cmp = grid('diff', (f, t) => {
    if (f === t) return '~';
    const e = expected.get(combo, f, t);
    const o = observed.get(combo, f, t);
    return e === o ? '.' : o ? '+' : '-';
  });
  const width = exp[0]!.length + 3;
  const rows = exp.map((line, i) => line.padEnd(width) + obs[i]!.padEnd(width) + cmp[i]!);
  return [`  ${combo}: expected (rows: from, columns: to) | observed | diff`, ...rows.map((r) => `    ${r.trimEnd()}`)].join('\n');
}

/** The legend printed once before the first failure. */
export const TRUTH_TABLE_LEGEND =
  'legend: "." connects, "X" blocked, "~" a pod to itself (not compared); diff: "+" connected but expected blocked, "-" blocked but expected to connect';

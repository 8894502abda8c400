/**
 * Reachability matrices: for each probed (protocol, port), a 9×9 table of
 * "does a connection from row pod to column pod get through". Cases build the
 * expected one with a few allow/deny strokes, as the upstream tests do; the
 * prober fills the observed one.
 */
import { COMBOS, PODS, type Combo } from './model.ts';

/** Pods named as "*" (all), "x" (a namespace), "x/a" (one pod), or a list of those. */
export type PodSet = string | string[];

/** Which cells a stroke touches; every part defaults to "all". */
export interface Cells {
  from?: PodSet;
  to?: PodSet;
  on?: Combo[];
}

/** Row/column index of each pod. */
const INDEX = new Map(PODS.map((p, i) => [p, i]));

/** The pods of a PodSet, in table order. */
export function podsOf(set: PodSet | undefined): string[] {
  if (set === undefined) return [...PODS];
  const parts = Array.isArray(set) ? set : [set];
  const out = new Set<string>();
  for (const part of parts) {
    const matched = part === '*' ? PODS : PODS.filter((p) => p === part || p.startsWith(`${part}/`));
    if (matched.length === 0) throw new Error(`'${part}' names no pod of the model`);
    for (const p of matched) out.add(p);
  }
  return PODS.filter((p) => out.has(p));
}

/** A reachability matrix per combo. */
export class Reachability {
  readonly cells = new Map<Combo, boolean[][]>();

  constructor(initial: boolean) {
    for (const c of COMBOS) this.cells.set(c, PODS.map(() => PODS.map(() => initial)));
  }

  /** Everything connects: where every case starts. */
  static allowAll(): Reachability {
    return new Reachability(true);
  }

  /** Sets the selected cells. */
  set(cells: Cells, value: boolean): this {
    const from = podsOf(cells.from).map((p) => INDEX.get(p)!);
    const to = podsOf(cells.to).map((p) => INDEX.get(p)!);
    for (const combo of cells.on ?? COMBOS) {
      const m = this.cells.get(combo)!;
      for (const i of from) for (const j of to) m[i]![j] = value;
    }
    return this;
  }

  /** Expects connections in the selected cells to get through. */
  allow(cells: Cells): this {
    return this.set(cells, true);
  }

  /** Expects connections in the selected cells to be blocked. */
  deny(cells: Cells): this {
    return this.set(cells, false);
  }

  /** The value of one cell. */
  get(combo: Combo, from: string, to: string): boolean {
    return this.cells.get(combo)![INDEX.get(from)!]![INDEX.get(to)!]!;
  }
}

/** One cell where observation and expectation differ. */
export interface Mismatch {
  combo: Combo;
  from: string;
  to: string;
  expected: boolean;
}

/**
 * Cells that differ. A pod's connection to itself never leaves its network
 * namespace, so the spec's outcome for it is undefined (upstream ignores
 * loopback too): the diagonal is shown but never compared.
 */
export function mismatches(expected: Reachability, observed: Reachability): Mismatch[] {
  const out: Mismatch[] = [];
  for (const combo of COMBOS) {
    for (const from of PODS) {
      for (const to of PODS) {
        if (from === to) continue;
        const e = expected.get(combo, from, to);
        if (e !== observed.get(combo, from, to)) out.push({ combo, from, to, expected: e });
      }
    }
  }
  return out;
}

/** Small statistics and table helpers shared by the benchmarks. */

/** Median of the samples (mean of the middle two for an even count). */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** Formats a number with a fixed number of decimals, '-' for NaN. */
export function fmt(x: number, decimals = 1): string {
  return Number.isFinite(x) ? x.toFixed(decimals) : '-';
}

/** Renders rows as a left-aligned first column and right-aligned others. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Rounds for the JSON line. */
export function round(x: number, decimals = 2): number {
  return Number.isFinite(x) ? Number(x.toFixed(decimals)) : NaN;
}

/** The machine, for the record: CPU model, cores, kernel, load average at the start. */
export function machine(): { cpu: string; cores: number; kernel: string; loadAverage: number[] } {
  // Imported lazily so the module stays import-cheap for pure users.
  const os = process.getBuiltinModule('node:os');
  return { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, kernel: os.release(), loadAverage: os.loadavg().map((l) => round(l)) };
}

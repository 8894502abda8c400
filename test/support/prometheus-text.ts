/**
 * A strict reader of the Prometheus text exposition format (0.0.4) for tests:
 * every line must be a HELP, a TYPE or a well-formed sample, every sample
 * must belong to a declared family, and lookups fail loudly.
 */

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition. */
export interface Exposition {
  /** Family name → TYPE. */
  types: Map<string, string>;
  samples: Sample[];
}

const SAMPLE_RE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/;
const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];

/** Parses the text; throws on the first line that is not valid exposition format. */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  text.split('\n').forEach((line, i) => {
    const where = `line ${i + 1} '${line}'`;
    if (line === '') return;
    if (line.startsWith('# HELP ')) return;
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      if (!name || !['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type ?? '')) throw new Error(`bad TYPE at ${where}`);
      types.set(name, type!);
      return;
    }
    if (line.startsWith('#')) throw new Error(`unexpected comment at ${where}`);
    const m = SAMPLE_RE.exec(line);
    if (!m) throw new Error(`malformed sample at ${where}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      LABEL_RE.lastIndex = 0;
      let consumed = 0;
      for (let l = LABEL_RE.exec(m[2]); l; l = LABEL_RE.exec(m[2])) {
        labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
        consumed = LABEL_RE.lastIndex;
      }
      if (consumed !== m[2].length) throw new Error(`malformed labels at ${where}`);
    }
    // Prometheus parses values with Go's ParseFloat: NaN and Inf in any case.
    const special: Record<string, number> = { nan: NaN, '+inf': Infinity, inf: Infinity, '-inf': -Infinity };
    const value = special[m[3]!.toLowerCase()] ?? Number(m[3]);
    if (Number.isNaN(value) && m[3]!.toLowerCase() !== 'nan') throw new Error(`malformed value at ${where}`);
    samples.push({ name: m[1]!, labels, value });
  });
  return { types, samples };
}

/** The family a sample belongs to (histogram samples carry a suffix). */
export function familyOf(e: Exposition, sampleName: string): string | undefined {
  if (e.types.has(sampleName)) return sampleName;
  const suffix = HISTOGRAM_SUFFIXES.find((s) => sampleName.endsWith(s));
  const base = suffix ? sampleName.slice(0, -suffix.length) : undefined;
  return base && e.types.get(base) === 'histogram' ? base : undefined;
}

/** Samples of a name whose labels include the given ones. */
export function samplesOf(e: Exposition, name: string, labels: Record<string, string> = {}): Sample[] {
  return e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one sample of a name with these labels (and no others beyond them, when exact); throws when there is not exactly one. */
export function valueOf(e: Exposition, name: string, labels: Record<string, string> = {}, exact = true): number {
  const found = samplesOf(e, name, labels).filter((s) => !exact || Object.keys(s.labels).length === Object.keys(labels).length);
  if (found.length !== 1) throw new Error(`expected one sample ${name}${JSON.stringify(labels)}, found ${found.length}`);
  return found[0]!.value;
}

/** A counter's value: 0 when the series does not exist yet (counters appear on their first increment). */
export function counterValue(e: Exposition, name: string, labels: Record<string, string> = {}): number {
  return samplesOf(e, name, labels).length === 0 ? 0 : valueOf(e, name, labels);
}

/**
 * Filters of flow records (GET /v1/flows, `sluice observe`, the UI): read
 * from a query once, checked, then matched against each record. Pure.
 */
import type { FlowEndpoint, FlowFilter, FlowRecord } from '../../contract/flows.ts';
import { parseSelectorText, selectorMatches } from '../../policy/selector.ts';
import type { LabelSelector } from '../../policy/types.ts';

/** A filter that cannot be read; the message says which and why. */
export class FlowFilterError extends Error {}

/** A filter ready to match: the selector read, `since` an absolute time. */
export interface CompiledFlowFilter {
  filter: FlowFilter;
  selector?: LabelSelector;
  /** Epoch ms; records before it do not match. */
  sinceMs?: number;
}

const VERDICTS = ['ALLOWED', 'DENIED', 'DROPPED'] as const;
const TYPES = ['flow', 'drop', 'l7', 'alert'] as const;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The filter of a query string; unknown values are errors, not ignored (a typo would otherwise show everything). */
export function flowFilterOf(q: URLSearchParams, nowMs = Date.now()): CompiledFlowFilter {
  const filter: FlowFilter = {};
  const text = (name: string) => {
    const v = q.get(name);
    return v === null || v === '' ? undefined : v;
  };
  if (text('namespace')) filter.namespace = text('namespace');
  if (text('pod')) filter.pod = text('pod');
  if (text('selector')) filter.selector = text('selector');
  if (text('protocol')) filter.protocol = text('protocol')!.toUpperCase();
  const verdict = text('verdict')?.toUpperCase();
  if (verdict !== undefined) {
    if (!(VERDICTS as readonly string[]).includes(verdict)) throw new FlowFilterError(`verdict "${verdict}" is not one of ${VERDICTS.join(', ')}`);
    filter.verdict = verdict as FlowFilter['verdict'];
  }
  const type = text('type')?.toLowerCase();
  if (type !== undefined) {
    if (!(TYPES as readonly string[]).includes(type)) throw new FlowFilterError(`type "${type}" is not one of ${TYPES.join(', ')}`);
    filter.type = type as FlowFilter['type'];
  }
  const l7 = text('l7')?.toLowerCase();
  if (l7 !== undefined) {
    if (l7 !== 'dns' && l7 !== 'http') throw new FlowFilterError(`l7 "${l7}" is not dns or http`);
    filter.l7 = l7;
  }
  const port = text('port');
  if (port !== undefined) {
    const n = Number(port);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new FlowFilterError(`port "${port}" is not 0-65535`);
    filter.port = n;
  }
  const out: CompiledFlowFilter = { filter };
  if (filter.selector) {
    try {
      out.selector = parseSelectorText(filter.selector);
    } catch (err: unknown) {
      throw new FlowFilterError(`selector: ${(err as Error).message}`);
    }
  }
  const since = text('since');
  if (since !== undefined) {
    filter.since = since;
    const d = DURATION.exec(since);
    const ms = d ? nowMs - Number(d[1]) * UNIT_MS[d[2]!]! : Date.parse(since);
    if (Number.isNaN(ms)) throw new FlowFilterError(`since "${since}" is neither a time (ISO 8601) nor a duration (30s, 5m, 1h)`);
    out.sinceMs = ms;
  }
  return out;
}

function onPod(end: FlowEndpoint, ref: string): boolean {
  return ref.includes('/') ? end.name === ref : end.pod === ref;
}

/** True when the record passes every filter given. */
export function flowMatches(r: FlowRecord, f: CompiledFlowFilter): boolean {
  const { filter } = f;
  const ends = [r.source, r.destination];
  if (filter.namespace && !ends.some((e) => e.namespace === filter.namespace)) return false;
  if (filter.pod && !ends.some((e) => onPod(e, filter.pod!))) return false;
  if (filter.verdict && r.verdict !== filter.verdict) return false;
  if (filter.type && r.type !== filter.type) return false;
  if (filter.protocol && r.protocol.toUpperCase() !== filter.protocol) return false;
  if (filter.port !== undefined && !ends.some((e) => e.port === filter.port)) return false;
  if (filter.l7 && r.l7?.type !== filter.l7) return false;
  if (f.selector && !ends.some((e) => e.labels !== undefined && selectorMatches(f.selector!, e.labels))) return false;
  if (f.sinceMs !== undefined && Date.parse(r.time) < f.sinceMs) return false;
  return true;
}

/** Label selector matching, as Kubernetes defines it. Pure. */
import type { LabelSelector, LabelSelectorRequirement } from './types.ts';

/**
 * True when the labels satisfy the selector. An empty selector matches
 * everything; NotIn and DoesNotExist match labels that lack the key; Exists
 * matches an empty value.
 */
export function selectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, req.key);
    const value = labels[req.key];
    switch (req.operator) {
      case 'In':
        if (!has || !(req.values ?? []).includes(value!)) return false;
        break;
      case 'NotIn':
        if (has && (req.values ?? []).includes(value!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        // An operator we do not know selects nothing, rather than everything.
        return false;
    }
  }
  return true;
}

/** A label selector in text that cannot be read. */
export class SelectorSyntaxError extends Error {}

/**
 * Reads a label selector as kubectl's -l takes it: requirements separated by
 * commas, each `key=value`, `key==value`, `key!=value`, `key in (a,b)`,
 * `key notin (a,b)`, `key` or `!key`. `key!=value` is NotIn, which (as in
 * Kubernetes) also matches labels without the key. Throws SelectorSyntaxError.
 */
export function parseSelectorText(text: string): LabelSelector {
  const matchExpressions: LabelSelectorRequirement[] = [];
  for (const part of splitRequirements(text)) {
    const set = /^([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)$/.exec(part);
    const cmp = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(part);
    const exists = /^(!?)\s*([^\s!=(),]+)$/.exec(part);
    if (set) {
      const values = set[3]!.split(',').map((v) => v.trim());
      if (values.some((v) => v === '')) throw new SelectorSyntaxError(`empty value in "${part}"`);
      matchExpressions.push({ key: set[1]!, operator: set[2] === 'in' ? 'In' : 'NotIn', values });
    } else if (cmp) {
      matchExpressions.push({ key: cmp[1]!, operator: cmp[2] === '!=' ? 'NotIn' : 'In', values: [cmp[3]!] });
    } else if (exists) {
      matchExpressions.push({ key: exists[2]!, operator: exists[1] ? 'DoesNotExist' : 'Exists' });
    } else {
      throw new SelectorSyntaxError(`cannot read "${part}" (want key=value, key!=value, key in (a,b), key notin (a,b), key or !key)`);
    }
  }
  return { matchExpressions };
}

/** Splits at commas outside parentheses; an empty text is no requirement. */
function splitRequirements(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (depth < 0) throw new SelectorSyntaxError(`unbalanced ")" in "${text}"`);
    if (ch === ',' && depth === 0) {
      parts.push(current.trim());
      current = '';
    } else current += ch;
  }
  if (depth !== 0) throw new SelectorSyntaxError(`unbalanced "(" in "${text}"`);
  if (current.trim() !== '' || parts.length > 0) parts.push(current.trim());
  if (parts.some((p) => p === '')) throw new SelectorSyntaxError(`empty requirement in "${text}"`);
  return parts;
}

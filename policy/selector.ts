/** Label selector matching, as Kubernetes defines it. Pure. */
import type { LabelSelector } from './types.ts';

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

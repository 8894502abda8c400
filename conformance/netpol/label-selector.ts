/**
 * Label selectors as the Kubernetes API defines them (metav1.LabelSelector):
 * every matchLabels pair and every matchExpressions requirement must hold; an
 * empty selector matches everything. Written for the reference evaluator.
 */
import type { LabelSelector, LabelSelectorRequirement } from './types.ts';

function requirementHolds(req: LabelSelectorRequirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, req.key);
  const values = req.values ?? [];
  switch (req.operator) {
    case 'In':
      return has && values.includes(labels[req.key]!);
    case 'NotIn':
      // A label that is absent is not in any set.
      return !has || !values.includes(labels[req.key]!);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    default:
      throw new Error(`unknown selector operator ${String((req as { operator: unknown }).operator)}`);
  }
}

/** True when the labels satisfy the selector. */
export function labelsMatch(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  return (selector.matchExpressions ?? []).every((req) => requirementHolds(req, labels));
}

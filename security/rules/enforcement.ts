/** What the kernel must enforce for kill and deny-connect rules (filled in by the next step). */
import type { RuleAction } from '../../contract/security.ts';
import type { Expr } from './condition-compile.ts';

export type Enforcement = never;

export function enforcementOf(_rule: string, action: Exclude<RuleAction, 'alert'>, _expr: Expr): Enforcement {
  throw new Error(`${action} is not supported yet`);
}

/** What the kernel must enforce for kill and deny-connect rules (extraction lands in the next step). */
import type { RuleAction } from '../../contract/security.ts';
import type { Expr } from './condition-compile.ts';

/** Which pods a rule applies to, from what the agent knows of a pod. */
export type PodPredicate = (labels: Readonly<Record<string, string>>, namespace: string, name: string) => boolean;

export interface KillEnforcement {
  action: 'kill';
  rule: string;
  binaries: { names: string[]; paths: string[] };
  pods: PodPredicate;
}

export interface DenyConnectEnforcement {
  action: 'deny-connect';
  rule: string;
  pods: PodPredicate;
  deniedPorts?: number[];
  allowedPorts?: number[];
}

export type Enforcement = KillEnforcement | DenyConnectEnforcement;

export function enforcementOf(_rule: string, action: Exclude<RuleAction, 'alert'>, _expr: Expr): Enforcement {
  throw new Error(`${action} is not supported yet`);
}

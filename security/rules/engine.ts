/**
 * The rule engine: loaded rules, indexed by the event types their conditions
 * can hold for, evaluated on each event to Falco-style alerts.
 */
import type { SecurityAlert, SecurityEvent, SecurityEventType } from '../../contract/security.ts';
import type { DenyConnectEnforcement, KillEnforcement } from './enforcement.ts';
import { EVENT_TYPES } from './event-types.ts';
import type { LoadedRule } from './load.ts';

export interface RuleEngineOptions {
  /** The node's name, written in each alert (Falco's hostname). */
  hostname: string;
}

/** What the kernel must enforce: the kill and deny-connect rules, in load order. */
export interface EnforcementPlan {
  kill: KillEnforcement[];
  denyConnect: DenyConnectEnforcement[];
}

export class RuleEngine {
  /** The enabled rules, in load order. */
  readonly rules: readonly LoadedRule[];
  private readonly hostname: string;
  private readonly byType: ReadonlyMap<SecurityEventType, readonly LoadedRule[]>;

  /** Takes the rules loadRuleFiles or loadRuleSources returned; disabled ones are left out. */
  constructor(rules: readonly LoadedRule[], options: RuleEngineOptions) {
    this.rules = rules.filter((r) => r.enabled);
    this.hostname = options.hostname;
    this.byType = new Map(EVENT_TYPES.map((t) => [t, this.rules.filter((r) => r.eventTypes.has(t))]));
  }

  /** The rules an event of this type is evaluated against (those whose condition can hold for it). */
  rulesFor(type: SecurityEventType): readonly LoadedRule[] {
    return this.byType.get(type) ?? [];
  }

  /** The alerts of every rule whose condition holds for the event, in load order. */
  evaluate(event: SecurityEvent): SecurityAlert[] {
    const alerts: SecurityAlert[] = [];
    for (const rule of this.rulesFor(event.type)) {
      if (rule.matches(event)) alerts.push(this.alert(rule, event));
    }
    return alerts;
  }

  /** The alert a rule raises for an event (Falco's JSON fields, plus the action and the event). */
  alert(rule: LoadedRule, event: SecurityEvent): SecurityAlert {
    const { text, fields } = rule.compiledOutput.format(event);
    return {
      time: event.time,
      rule: rule.name,
      priority: rule.priority,
      output: text,
      output_fields: fields,
      tags: [...rule.tags],
      source: 'syscall',
      hostname: this.hostname,
      action: rule.action,
      event,
    };
  }

  /** What the kernel must enforce for the enabled kill and deny-connect rules. */
  enforcement(): EnforcementPlan {
    const plan: EnforcementPlan = { kill: [], denyConnect: [] };
    for (const rule of this.rules) {
      const e = rule.enforcement;
      if (e?.action === 'kill') plan.kill.push(e);
      else if (e?.action === 'deny-connect') plan.denyConnect.push(e);
    }
    return plan;
  }
}

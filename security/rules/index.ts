/**
 * The runtime security rule engine (issue 19), pure TypeScript: Falco-style
 * YAML rules loaded with file:line errors, compiled once, evaluated on
 * SecurityEvents to SecurityAlerts, plus what the kernel must enforce for
 * kill and deny-connect rules. The shipped defaults are default.yaml here
 * (defaultRulesSource()).
 */

export { DEFAULT_RULES_ASSET, defaultRulesSource } from './default-rules.ts';
export { RuleEngine, type EnforcementPlan, type RuleEngineOptions } from './engine.ts';
export type { DenyConnectEnforcement, Enforcement, KillEnforcement, PodPredicate } from './enforcement.ts';
export { EVENT_TYPES } from './event-types.ts';
export { FIELD_NAMES } from './fields.ts';
export { loadRuleFiles, loadRuleSources, readRuleFiles, type LoadedRule, type LoadResult, type RuleLoadError, type RuleLocation, type RuleSource } from './load.ts';

/**
 * The shipped default rules (default.yaml beside this module): an asset of
 * the single executable in production, the file in a source checkout.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sea from 'node:sea';
import type { RuleSource } from './load.ts';

/** Name of default.yaml among the single executable's assets (tools/build-sea.ts must add it). */
export const DEFAULT_RULES_ASSET = 'security-default-rules.yaml';

/** The default rules as a source for loadRuleSources (put it first: later files tune it). */
export function defaultRulesSource(): RuleSource {
  if (sea.isSea()) return { file: `<built-in>/${DEFAULT_RULES_ASSET}`, text: sea.getAsset(DEFAULT_RULES_ASSET, 'utf8') };
  // Only reached outside a single executable: the SEA bundle is CommonJS, where import.meta does not exist.
  const file = join(import.meta.dirname, 'default.yaml');
  return { file, text: readFileSync(file, 'utf8') };
}

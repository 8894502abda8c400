/**
 * Loading rule files: Falco's YAML items `- rule:`, `- macro:` and `- list:`,
 * from files and directories (every *.yaml / *.yml in it, sorted), in order.
 * A later definition of a macro, list or rule replaces the earlier one (a
 * rule keeps its place); with `append: true` a list gets more items and a
 * macro or rule more condition text, as in Falco. A rule item with only
 * `rule` and `enabled` switches an earlier rule on or off.
 *
 * A definition that does not load (bad YAML value, condition, field, macro,
 * list, priority, action, output, or a kill/deny-connect rule the kernel
 * cannot enforce) gets an error naming its file and line and is left out;
 * every other rule loads. A file whose YAML does not parse is left out whole.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import { PRIORITIES, type Priority, type RuleAction, type SecurityEventType } from '../../contract/security.ts';
import { errorMessage } from '../../lib/errors.ts';
import { ConditionError, compileCondition, resolveCondition, type ConditionScope, type Expr, type Predicate } from './condition-compile.ts';
import { ConditionSyntaxError, parseCondition, type ConditionNode } from './condition-parse.ts';
import { enforcementOf, type Enforcement } from './enforcement.ts';
import { eventTypesOf } from './event-types.ts';
import { compileOutput, type CompiledOutput } from './output.ts';

/** Where a definition is: the file as it was named to the loader, and a 1-based line. */
export interface RuleLocation {
  file: string;
  line: number;
}

/** A definition that did not load. `text` reads `file:line: rule "x": condition: unknown field proc.nmae`. */
export interface RuleLoadError extends RuleLocation {
  message: string;
  text: string;
}

/** A rule ready to evaluate. */
export interface LoadedRule {
  name: string;
  desc: string;
  /** The condition as written (appends joined). */
  condition: string;
  output: string;
  priority: Priority;
  tags: string[];
  action: RuleAction;
  enabled: boolean;
  /** Where the rule was first defined. */
  location: RuleLocation;
  expr: Expr;
  matches: Predicate;
  /** The event types the condition can hold for (all of them when it does not constrain evt.type). */
  eventTypes: ReadonlySet<SecurityEventType>;
  compiledOutput: CompiledOutput;
  /** What the kernel must enforce, for a kill or deny-connect rule. */
  enforcement?: Enforcement;
}

export interface LoadResult {
  rules: LoadedRule[];
  errors: RuleLoadError[];
}

/** A rule file's text and the name its errors give it (a path, or `configmap/x:key`). */
export interface RuleSource {
  file: string;
  text: string;
}

const ACTIONS: readonly RuleAction[] = ['alert', 'kill', 'deny-connect'];
const PRIORITY_ALIASES: Record<string, Priority> = { INFO: 'INFORMATIONAL' };
const RULE_KEYS = new Set(['rule', 'desc', 'condition', 'output', 'priority', 'tags', 'enabled', 'action', 'append', 'source', 'warn_evttypes', 'skip-if-unknown-filter']);
const APPEND_RULE_KEYS = new Set(['rule', 'condition', 'append', 'enabled']);
const MACRO_KEYS = new Set(['macro', 'condition', 'append']);
const LIST_KEYS = new Set(['list', 'items', 'append']);
const IGNORED_ITEMS = ['required_engine_version', 'required_plugin_versions'];

/** Loads rule files and directories (each directory's *.yaml and *.yml, sorted), in the order given. */
export function loadRuleFiles(paths: readonly string[]): LoadResult {
  const { sources, errors } = readRuleFiles(paths);
  const result = loadRuleSources(sources);
  return { rules: result.rules, errors: [...errors, ...result.errors] };
}

/** Reads rule files and directories into sources (to load with others, e.g. after the defaults); what cannot be read is an error. */
export function readRuleFiles(paths: readonly string[]): { sources: RuleSource[]; errors: RuleLoadError[] } {
  const sources: RuleSource[] = [];
  const errors: RuleLoadError[] = [];
  for (const path of paths) {
    try {
      if (statSync(path).isDirectory()) {
        for (const name of readdirSync(path).filter((n) => /\.ya?ml$/.test(n)).sort()) {
          const file = join(path, name);
          sources.push({ file, text: readFileSync(file, 'utf8') });
        }
      } else {
        sources.push({ file: path, text: readFileSync(path, 'utf8') });
      }
    } catch (err) {
      errors.push(loadError({ file: path, line: 0 }, `cannot read: ${errorMessage(err)}`));
    }
  }
  return { sources, errors };
}

/** Loads rules from texts already read, in order (files, or the keys of a ConfigMap). */
export function loadRuleSources(sources: readonly RuleSource[]): LoadResult {
  const defs = new Definitions();
  for (const source of sources) defs.addFile(source);
  const { rules, errors } = defs.finish();
  // In the order of the files, then of lines.
  const order = new Map(sources.map((s, i) => [s.file, i]));
  errors.sort((a, b) => (order.get(a.file) ?? 0) - (order.get(b.file) ?? 0) || a.line - b.line);
  return { rules, errors };
}

function loadError(at: RuleLocation, message: string): RuleLoadError {
  return { ...at, message, text: at.line > 0 ? `${at.file}:${at.line}: ${message}` : `${at.file}: ${message}` };
}

/** A piece of condition text and how to find the line of an offset in it. */
interface ConditionPiece {
  text: string;
  at: RuleLocation;
  lineOf(offset: number): number;
}

interface MacroDef {
  location: RuleLocation;
  pieces: ConditionPiece[];
}
interface ListDef {
  location: RuleLocation;
  items: string[];
}
interface RuleDef {
  name: string;
  location: RuleLocation;
  desc: string;
  pieces: ConditionPiece[];
  output: string;
  outputAt: RuleLocation;
  priority: Priority;
  tags: string[];
  action: RuleAction;
  enabled: boolean;
  skipIfUnknownFilter: boolean;
}

/** Thrown for a definition that does not load, at the place it names. */
class ItemError extends Error {
  readonly at: RuleLocation;
  constructor(at: RuleLocation, message: string) {
    super(message);
    this.at = at;
  }
}

/** One YAML item (a map) and where its keys are. */
class Item {
  readonly map: YAMLMap;
  readonly file: string;
  readonly text: string;
  readonly lines: LineCounter;
  constructor(map: YAMLMap, file: string, text: string, lines: LineCounter) {
    this.map = map;
    this.file = file;
    this.text = text;
    this.lines = lines;
  }

  location(node?: Node | null): RuleLocation {
    const offset = node?.range?.[0] ?? this.map.range?.[0] ?? 0;
    return { file: this.file, line: this.lines.linePos(offset).line };
  }
  pair(key: string): Pair | undefined {
    return this.map.items.find((p) => isScalar(p.key) && p.key.value === key) as Pair | undefined;
  }
  has(key: string): boolean {
    return this.pair(key) !== undefined;
  }
  keys(): string[] {
    return this.map.items.map((p) => (isScalar(p.key) ? String(p.key.value) : '?'));
  }
  at(key: string): RuleLocation {
    const p = this.pair(key);
    return this.location((p?.value ?? p?.key) as Node | undefined);
  }
  string(key: string, what: string): string | undefined {
    const p = this.pair(key);
    if (!p) return undefined;
    const v = p.value;
    if (!isScalar(v) || v.value === null || typeof v.value === 'object') throw new ItemError(this.at(key), `${what}: ${key} must be a string`);
    return String(v.value);
  }
  boolean(key: string, what: string): boolean | undefined {
    const p = this.pair(key);
    if (!p) return undefined;
    if (!isScalar(p.value) || typeof p.value.value !== 'boolean') throw new ItemError(this.at(key), `${what}: ${key} must be true or false`);
    return p.value.value;
  }
  strings(key: string, what: string): string[] | undefined {
    const p = this.pair(key);
    if (!p) return undefined;
    if (isScalar(p.value) && p.value.value === null) return [];
    if (!isSeq(p.value)) throw new ItemError(this.at(key), `${what}: ${key} must be a list`);
    return p.value.items.map((n) => {
      if (!isScalar(n) || n.value === null || typeof n.value === 'object') throw new ItemError(this.location(n as Node), `${what}: ${key} must hold plain values`);
      return String(n.value);
    });
  }
  /** The condition's text, with a way to find the line of an offset in it. */
  condition(what: string): ConditionPiece | undefined {
    const text = this.string('condition', what);
    if (text === undefined) return undefined;
    const node = this.pair('condition')!.value as Node;
    const at = this.location(node);
    const [start, end] = [node.range?.[0] ?? 0, node.range?.[1] ?? 0];
    const raw = this.text.slice(start, end);
    return {
      text,
      at,
      lineOf: (offset) => {
        // The token at the offset, found the same number of times in the raw
        // YAML (folded or quoted) as in the value before it.
        const token = /^\S{1,40}/.exec(text.slice(offset))?.[0];
        // At the end (a missing parenthesis): the value's last line.
        if (!token) return this.lines.linePos(start + raw.trimEnd().length - 1).line;
        const nth = text.slice(0, offset).split(token).length - 1;
        let pos = -1;
        for (let i = 0; i <= nth; i++) {
          pos = raw.indexOf(token, pos + 1);
          if (pos < 0) return at.line;
        }
        return this.lines.linePos(start + pos).line;
      },
    };
  }
}

class Definitions {
  private readonly lists = new Map<string, ListDef>();
  private readonly macros = new Map<string, MacroDef>();
  private readonly rules = new Map<string, RuleDef>();
  private readonly errors: RuleLoadError[] = [];

  addFile(source: RuleSource): void {
    const lines = new LineCounter();
    const doc = parseDocument(source.text, { lineCounter: lines, uniqueKeys: false });
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        this.errors.push(loadError({ file: source.file, line: err.linePos?.[0].line ?? 0 }, `YAML: ${err.message.split('\n')[0]}`));
      }
      return;
    }
    const contents = doc.contents;
    if (contents === null || (isScalar(contents) && contents.value === null)) return;
    if (!isSeq(contents)) {
      this.errors.push(loadError({ file: source.file, line: lines.linePos(contents.range?.[0] ?? 0).line }, 'a rules file is a list of rule, macro and list items'));
      return;
    }
    for (const node of contents.items) {
      if (!isMap(node)) {
        this.errors.push(loadError({ file: source.file, line: lines.linePos((node as Node | null)?.range?.[0] ?? 0).line }, 'an item must be a map with a rule, macro or list key'));
        continue;
      }
      const item = new Item(node, source.file, source.text, lines);
      try {
        if (item.has('rule')) this.addRule(item);
        else if (item.has('macro')) this.addMacro(item);
        else if (item.has('list')) this.addList(item);
        else if (!IGNORED_ITEMS.some((k) => item.has(k))) throw new ItemError(item.location(), `unknown item (keys: ${item.keys().join(', ')}): expected rule, macro or list`);
      } catch (err) {
        if (!(err instanceof ItemError)) throw err;
        this.errors.push(loadError(err.at, err.message));
      }
    }
  }

  private checkKeys(item: Item, allowed: ReadonlySet<string>, what: string): void {
    const seen = new Set<string>();
    for (const [i, key] of item.keys().entries()) {
      if (seen.has(key)) throw new ItemError(item.location(item.map.items[i]!.key as Node), `${what}: ${key} given twice`);
      seen.add(key);
      if (!allowed.has(key)) {
        const hint = key === 'exceptions' || key === 'override' ? ' (not supported)' : '';
        throw new ItemError(item.at(key), `${what}: unknown key ${key}${hint}`);
      }
    }
  }

  private addList(item: Item): void {
    const name = item.string('list', 'list') ?? '';
    const what = `list "${name}"`;
    this.checkKeys(item, LIST_KEYS, what);
    const items = item.strings('items', what);
    if (items === undefined) throw new ItemError(item.location(), `${what}: missing items`);
    if (item.boolean('append', what)) {
      const earlier = this.lists.get(name);
      if (!earlier) throw new ItemError(item.location(), `${what}: append to a list that is not defined before`);
      earlier.items.push(...items);
      return;
    }
    this.lists.set(name, { location: item.location(), items });
  }

  private addMacro(item: Item): void {
    const name = item.string('macro', 'macro') ?? '';
    const what = `macro "${name}"`;
    this.checkKeys(item, MACRO_KEYS, what);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new ItemError(item.location(), `${what}: a macro name is letters, digits and _`);
    const piece = item.condition(what);
    if (!piece) throw new ItemError(item.location(), `${what}: missing condition`);
    if (item.boolean('append', what)) {
      const earlier = this.macros.get(name);
      if (!earlier) throw new ItemError(item.location(), `${what}: append to a macro that is not defined before`);
      earlier.pieces.push(piece);
      return;
    }
    this.macros.set(name, { location: item.location(), pieces: [piece] });
  }

  private addRule(item: Item): void {
    const name = item.string('rule', 'rule') ?? '';
    const what = `rule "${name}"`;
    this.checkKeys(item, RULE_KEYS, what);
    const source = item.string('source', what);
    if (source !== undefined && source !== 'syscall') throw new ItemError(item.at('source'), `${what}: source ${source} is not supported (only syscall)`);
    const earlier = this.rules.get(name);
    const enabled = item.boolean('enabled', what);
    if (item.boolean('append', what)) {
      if (!earlier) throw new ItemError(item.location(), `${what}: append to a rule that is not defined before`);
      const other = item.keys().find((k) => !APPEND_RULE_KEYS.has(k));
      if (other !== undefined) throw new ItemError(item.at(other), `${what}: ${other} cannot be appended (only condition; redefine the rule to change it)`);
      const piece = item.condition(what);
      if (piece) earlier.pieces.push(piece);
      if (enabled !== undefined) earlier.enabled = enabled;
      return;
    }
    // `- rule: x` with only `enabled:` switches an earlier rule.
    if (enabled !== undefined && item.keys().every((k) => k === 'rule' || k === 'enabled')) {
      if (!earlier) throw new ItemError(item.location(), `${what}: enabled given for a rule that is not defined before`);
      earlier.enabled = enabled;
      return;
    }
    const piece = item.condition(what);
    const output = item.string('output', what);
    const priorityText = item.string('priority', what);
    const missing = [piece ? '' : 'condition', output !== undefined ? '' : 'output', priorityText !== undefined ? '' : 'priority'].filter(Boolean);
    if (missing.length > 0) throw new ItemError(item.location(), `${what}: missing ${missing.join(', ')}`);
    const priority = PRIORITIES.find((p) => p === priorityText!.toUpperCase()) ?? PRIORITY_ALIASES[priorityText!.toUpperCase()];
    if (!priority) throw new ItemError(item.at('priority'), `${what}: priority ${priorityText} is not one of ${PRIORITIES.join(', ')}`);
    const actionText = item.string('action', what) ?? 'alert';
    const action = ACTIONS.find((a) => a === actionText);
    if (!action) throw new ItemError(item.at('action'), `${what}: action ${actionText} is not one of ${ACTIONS.join(', ')}`);
    this.rules.set(name, {
      name,
      location: item.location(),
      desc: item.string('desc', what) ?? '',
      pieces: [piece!],
      // A folded `>` output ends with a newline that belongs to no alert.
      output: output!.trim(),
      outputAt: item.at('output'),
      priority,
      tags: item.strings('tags', what) ?? [],
      action,
      enabled: enabled ?? true,
      skipIfUnknownFilter: item.boolean('skip-if-unknown-filter', what) ?? false,
    });
  }

  /** Parses every macro, then compiles every rule against the final macros and lists. */
  finish(): LoadResult {
    const macros = new Map<string, ConditionNode>();
    const broken = new Set<string>();
    for (const [name, def] of this.macros) {
      try {
        macros.set(name, parsePieces(def.pieces));
      } catch (err) {
        if (!(err instanceof ItemError)) throw err;
        this.errors.push(loadError(err.at, `macro "${name}": condition: ${err.message}`));
        broken.add(name);
      }
    }
    const scope: ConditionScope = { macros, lists: new Map([...this.lists].map(([n, l]) => [n, l.items])) };
    // A macro that parses may still name an unknown field, macro or list.
    for (const [name, def] of this.macros) {
      if (broken.has(name)) continue;
      try {
        resolveCondition(macros.get(name)!, scope);
      } catch (err) {
        if (!(err instanceof ConditionError)) throw err;
        if (err.message.startsWith('in macro ')) continue; // reported at that macro
        this.errors.push(loadError(pieceAt(def.pieces, err.offset), `macro "${name}": condition: ${err.message}`));
      }
    }
    const rules: LoadedRule[] = [];
    for (const def of this.rules.values()) {
      const what = `rule "${def.name}"`;
      try {
        rules.push(compileRule(def, scope, broken));
      } catch (err) {
        if (err instanceof ItemError) {
          if (def.skipIfUnknownFilter && err.message.startsWith('condition: unknown field')) continue;
          this.errors.push(loadError(err.at, `${what}: ${err.message}`));
        } else throw err;
      }
    }
    return { rules, errors: this.errors };
  }
}

/** Parses the pieces of a condition joined with spaces; an ItemError names the piece's line. */
function parsePieces(pieces: readonly ConditionPiece[]): ConditionNode {
  const text = pieces.map((p) => p.text).join(' ');
  try {
    return parseCondition(text);
  } catch (err) {
    if (!(err instanceof ConditionSyntaxError)) throw err;
    throw new ItemError(pieceAt(pieces, err.offset), err.message);
  }
}

/** The location of an offset in the joined text of pieces. */
function pieceAt(pieces: readonly ConditionPiece[], offset: number | undefined): RuleLocation {
  let start = 0;
  for (const p of pieces) {
    if (offset !== undefined && offset <= start + p.text.length) return { file: p.at.file, line: p.lineOf(Math.max(0, offset - start)) };
    start += p.text.length + 1;
  }
  return pieces[pieces.length - 1]!.at;
}

function compileRule(def: RuleDef, scope: ConditionScope, brokenMacros: ReadonlySet<string>): LoadedRule {
  let node: ConditionNode;
  try {
    node = parsePieces(def.pieces);
  } catch (err) {
    if (err instanceof ItemError) throw new ItemError(err.at, `condition: ${err.message}`);
    throw err;
  }
  let expr: Expr;
  try {
    expr = resolveCondition(node, scope);
  } catch (err) {
    if (!(err instanceof ConditionError)) throw err;
    const macro = /^in macro (\w+)/.exec(err.message)?.[1];
    const message = macro && brokenMacros.has(macro) ? `macro ${macro} does not load` : err.message;
    throw new ItemError(pieceAt(def.pieces, err.offset), `condition: ${message}`);
  }
  let compiledOutput: CompiledOutput;
  try {
    compiledOutput = compileOutput(def.output);
  } catch (err) {
    throw new ItemError(def.outputAt, `output: ${errorMessage(err)}`);
  }
  const rule: LoadedRule = {
    name: def.name,
    desc: def.desc,
    condition: def.pieces.map((p) => p.text).join(' '),
    output: def.output,
    priority: def.priority,
    tags: def.tags,
    action: def.action,
    enabled: def.enabled,
    location: def.location,
    expr,
    matches: compileCondition(expr),
    eventTypes: eventTypesOf(expr),
    compiledOutput,
  };
  if (def.action !== 'alert') {
    try {
      rule.enforcement = enforcementOf(def.name, def.action, expr);
    } catch (err) {
      throw new ItemError(def.pieces[0]!.at, `action ${def.action}: ${errorMessage(err)}`);
    }
  }
  return rule;
}

/**
 * From a parsed condition to a predicate: macros inlined, list names
 * expanded, fields looked up and values typed (resolveCondition), then one
 * closure per node (compileCondition), so that no event is parsed again.
 */
import type { SecurityEvent } from '../../contract/security.ts';
import type { ConditionNode, Operator, ValueToken } from './condition-parse.ts';
import { lookupField, type Field, type FieldValue } from './fields.ts';

/** A condition with its macros and lists resolved and its values typed. */
export type Expr =
  | { kind: 'and'; items: Expr[] }
  | { kind: 'or'; items: Expr[] }
  | { kind: 'not'; item: Expr }
  | { kind: 'check'; field: Field; op: Operator; values: FieldValue[] };

export type Predicate = (e: SecurityEvent) => boolean;

/** A problem with names or values in a condition (unknown field, macro, list; a value of the wrong type). */
export class ConditionError extends Error {
  /** Where in the condition text: the check or the macro reference at fault. */
  readonly offset: number | undefined;
  constructor(message: string, offset?: number) {
    super(message);
    this.name = 'ConditionError';
    this.offset = offset;
  }
}

/** What a condition may refer to: macros (already parsed) and lists (items as written). */
export interface ConditionScope {
  macros: ReadonlyMap<string, ConditionNode>;
  lists: ReadonlyMap<string, readonly string[]>;
}

/** Resolves a parsed condition in a scope; throws ConditionError. */
export function resolveCondition(node: ConditionNode, scope: ConditionScope): Expr {
  return resolve(node, scope, []);
}

function resolve(node: ConditionNode, scope: ConditionScope, macroPath: string[]): Expr {
  switch (node.kind) {
    case 'and':
    case 'or':
      return { kind: node.kind, items: node.items.map((n) => resolve(n, scope, macroPath)) };
    case 'not':
      return { kind: 'not', item: resolve(node.item, scope, macroPath) };
    case 'macro': {
      const body = scope.macros.get(node.name);
      if (!body) throw new ConditionError(`unknown macro ${node.name}`, node.at);
      if (macroPath.includes(node.name)) throw new ConditionError(`macro ${node.name} refers to itself (${[...macroPath, node.name].join(' -> ')})`, node.at);
      try {
        return resolve(body, scope, [...macroPath, node.name]);
      } catch (err) {
        // Named by the outermost macro, at the place the condition refers to it.
        if (err instanceof ConditionError && macroPath.length === 0) {
          throw new ConditionError(err.message.startsWith('in macro ') ? err.message : `in macro ${node.name}: ${err.message}`, node.at);
        }
        throw err;
      }
    }
    case 'check':
      return resolveCheck(node, scope);
  }
}

function resolveCheck(node: Extract<ConditionNode, { kind: 'check' }>, scope: ConditionScope): Expr {
  const field = lookupField(node.field);
  if (!field) throw new ConditionError(`unknown field ${node.field}`, node.at);
  try {
    return resolveValues(node, field, scope);
  } catch (err) {
    if (err instanceof ConditionError && err.offset === undefined) throw new ConditionError(err.message, node.at);
    throw err;
  }
}

function resolveValues(node: Extract<ConditionNode, { kind: 'check' }>, field: Field, scope: ConditionScope): Expr {
  const { op } = node;
  if (op === 'exists') return { kind: 'check', field, op, values: [] };
  let texts: string[];
  if (op === 'in' || op === 'pmatch') {
    // `in name` without parentheses must name a list; inside parentheses a bare word that names a list is expanded.
    if (node.bareList && !scope.lists.has(node.values[0]!.text)) {
      throw new ConditionError(`unknown list ${node.values[0]!.text}`);
    }
    texts = expandList(node.values, scope, []);
  } else {
    texts = node.values.map((v) => v.text);
  }
  if (op === 'pmatch' && field.type !== 'string') throw new ConditionError(`operator pmatch needs a string field, not ${field.name}`);
  if ((op === 'contains' || op === 'icontains' || op === 'startswith' || op === 'endswith' || op === 'glob') && field.type !== 'string') {
    throw new ConditionError(`operator ${op} needs a string field, not ${field.name} (a ${field.type})`);
  }
  if ((op === '<' || op === '<=' || op === '>' || op === '>=') && field.type !== 'number') {
    throw new ConditionError(`operator ${op} needs a numeric field, not ${field.name}`);
  }
  return { kind: 'check', field, op, values: texts.map((t) => typed(t, field)) };
}

function expandList(values: readonly ValueToken[], scope: ConditionScope, path: string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    const items = v.quoted ? undefined : scope.lists.get(v.text);
    if (items === undefined) {
      out.push(v.text);
      continue;
    }
    if (path.includes(v.text)) throw new ConditionError(`list ${v.text} refers to itself`);
    out.push(...expandList(items.map((text) => ({ text, quoted: false })), scope, [...path, v.text]));
  }
  return out;
}

function typed(text: string, field: Field): FieldValue {
  switch (field.type) {
    case 'string':
      return text;
    case 'number': {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n)) throw new ConditionError(`${field.name} is a number, not '${text}'`);
      return n;
    }
    case 'boolean':
      if (text === 'true') return true;
      if (text === 'false') return false;
      throw new ConditionError(`${field.name} is true or false, not '${text}'`);
  }
}

/** Compiles a resolved condition to one closure per node (nested and/or flattened, as macros nest them). */
export function compileCondition(expr: Expr): Predicate {
  switch (expr.kind) {
    case 'and':
    case 'or': {
      const items = flatten(expr.kind, expr.items).map(compileCondition);
      const any = expr.kind === 'or';
      if (items.length === 1) return items[0]!;
      if (items.length === 2) {
        const [a, b] = items as [Predicate, Predicate];
        return any ? (e) => a(e) || b(e) : (e) => a(e) && b(e);
      }
      if (items.length === 3) {
        const [a, b, c] = items as [Predicate, Predicate, Predicate];
        return any ? (e) => a(e) || b(e) || c(e) : (e) => a(e) && b(e) && c(e);
      }
      return (e) => {
        for (const p of items) if (p(e) === any) return any;
        return !any;
      };
    }
    case 'not': {
      const item = compileCondition(expr.item);
      return (e) => !item(e);
    }
    case 'check':
      return compileCheck(expr);
  }
}

function flatten(kind: 'and' | 'or', items: readonly Expr[]): Expr[] {
  return items.flatMap((i) => (i.kind === kind ? flatten(kind, i.items) : [i]));
}

function compileCheck(expr: Extract<Expr, { kind: 'check' }>): Predicate {
  const get = expr.field.get;
  const values = expr.values;
  const test = valueTest(expr.op, values);
  if (expr.op === 'exists') return (e) => get(e) !== undefined;
  // An absent field fails every comparison (Falco).
  return (e) => {
    const v = get(e);
    return v !== undefined && test(v);
  };
}

function valueTest(op: Operator, values: readonly FieldValue[]): (v: FieldValue) => boolean {
  const first = values[0]!;
  switch (op) {
    case '=':
    case '==':
      return (v) => v === first;
    case '!=':
      return (v) => v !== first;
    case '<':
      return (v) => (v as number) < (first as number);
    case '<=':
      return (v) => (v as number) <= (first as number);
    case '>':
      return (v) => (v as number) > (first as number);
    case '>=':
      return (v) => (v as number) >= (first as number);
    case 'contains':
      return (v) => (v as string).includes(first as string);
    case 'icontains': {
      const lower = (first as string).toLowerCase();
      return (v) => (v as string).toLowerCase().includes(lower);
    }
    case 'startswith':
      return (v) => (v as string).startsWith(first as string);
    case 'endswith':
      return (v) => (v as string).endsWith(first as string);
    case 'glob': {
      const re = globRegExp(first as string);
      return (v) => re.test(v as string);
    }
    case 'in': {
      const set = new Set(values);
      return (v) => set.has(v);
    }
    case 'pmatch': {
      // A path matches a prefix when it is the prefix or lies below it.
      const prefixes = (values as string[]).map((p) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p));
      return (v) => prefixes.some((p) => v === p || (v as string).startsWith(p === '/' ? p : `${p}/`));
    }
    case 'exists':
      return () => true;
  }
}

/** fnmatch(3) without flags: `*` and `?` also match `/`; `[...]` and `[!...]` are classes. */
export function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) re += '\\[';
      else {
        let body = glob.slice(i + 1, close);
        if (body.startsWith('!')) body = `^${body.slice(1)}`;
        re += `[${body.replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

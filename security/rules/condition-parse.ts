/**
 * Falco's condition language (the subset Sluice supports), parsed to a tree.
 * Precedence: `not` binds tighter than `and`, `and` tighter than `or`.
 *
 *   or    := and ('or' and)*
 *   and   := not ('and' not)*
 *   not   := 'not' not | '(' or ')' | check | macro
 *   check := field op value | field ('in'|'pmatch') list | field 'exists'
 *   list  := '(' value (',' value)* ')' | list-name
 *
 * A bare identifier that no operator follows is a macro reference. Names of
 * fields, macros and lists are checked later (condition-compile.ts), when the
 * macros and lists of every file are known.
 */
import { fieldNameLength } from './fields.ts';

export const BINARY_OPERATORS = ['=', '==', '!=', '<', '<=', '>', '>=', 'contains', 'icontains', 'startswith', 'endswith', 'glob'] as const;
export const LIST_OPERATORS = ['in', 'pmatch'] as const;
export type BinaryOperator = (typeof BINARY_OPERATORS)[number];
export type ListOperator = (typeof LIST_OPERATORS)[number];
export type Operator = BinaryOperator | ListOperator | 'exists';

/** A value as written: a quoted string, or a bare word (which, in a list, may name a list). */
export interface ValueToken {
  text: string;
  quoted: boolean;
}

export type ConditionNode =
  | { kind: 'and'; items: ConditionNode[] }
  | { kind: 'or'; items: ConditionNode[] }
  | { kind: 'not'; item: ConditionNode }
  /** bareList: `in name` written without parentheses (the name must be a list's). */
  | { kind: 'check'; field: string; op: Operator; values: ValueToken[]; at: number; bareList?: boolean }
  | { kind: 'macro'; name: string; at: number };

/** A syntax error, with the offset in the condition where it was found. */
export class ConditionSyntaxError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.name = 'ConditionSyntaxError';
    this.offset = offset;
  }
}

// Longest first, so that `<=` is not read as `<`.
const SYMBOL_OPERATORS = ['==', '!=', '<=', '>=', '=', '<', '>'] as const;
const WORD_OPERATORS = ['contains', 'icontains', 'startswith', 'endswith', 'glob', 'in', 'pmatch', 'exists', 'intersects', 'bcontains', 'bstartswith'] as const;
const UNSUPPORTED_OPERATORS = new Set(['intersects', 'bcontains', 'bstartswith']);
const KEYWORDS = new Set(['and', 'or', 'not']);
const WORD_CHAR = /[A-Za-z0-9_.]/;

/** Parses a condition; throws ConditionSyntaxError. */
export function parseCondition(text: string): ConditionNode {
  return new Parser(text).parse();
}

class Parser {
  private pos = 0;
  private readonly text: string;
  constructor(text: string) {
    this.text = text;
  }

  parse(): ConditionNode {
    this.skipSpace();
    if (this.pos >= this.text.length) throw this.error('empty condition');
    const node = this.parseOr();
    this.skipSpace();
    if (this.pos < this.text.length) throw this.error(`unexpected '${this.snippet()}'`);
    return node;
  }

  private parseOr(): ConditionNode {
    const items = [this.parseAnd()];
    while (this.keyword('or')) items.push(this.parseAnd());
    return items.length === 1 ? items[0]! : { kind: 'or', items };
  }

  private parseAnd(): ConditionNode {
    const items = [this.parseNot()];
    while (this.keyword('and')) items.push(this.parseNot());
    return items.length === 1 ? items[0]! : { kind: 'and', items };
  }

  private parseNot(): ConditionNode {
    if (this.keyword('not')) return { kind: 'not', item: this.parseNot() };
    this.skipSpace();
    if (this.text[this.pos] === '(') {
      this.pos++;
      const node = this.parseOr();
      this.skipSpace();
      if (this.text[this.pos] !== ')') throw this.error(this.atEnd() ? "missing ')'" : `expected ')' or an operator, got '${this.snippet()}'`);
      this.pos++;
      return node;
    }
    return this.parseCheck();
  }

  private parseCheck(): ConditionNode {
    this.skipSpace();
    const at = this.pos;
    const length = fieldNameLength(this.text, this.pos);
    if (length === 0) throw this.error(this.atEnd() ? 'unexpected end of condition' : `expected a field or a macro, got '${this.snippet()}'`);
    const name = this.text.slice(this.pos, this.pos + length);
    if (KEYWORDS.has(name)) throw this.error(`unexpected '${name}'`);
    this.pos += length;
    const op = this.operator();
    if (op === undefined) {
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return { kind: 'macro', name, at };
      this.skipSpace();
      throw this.error(this.atEnd() ? `expected an operator after ${name}` : `expected an operator after ${name}, got '${this.snippet()}'`);
    }
    if (op === 'exists') return { kind: 'check', field: name, op, values: [], at };
    if (op === 'in' || op === 'pmatch') {
      this.skipSpace();
      const bareList = this.text[this.pos] !== '(';
      return { kind: 'check', field: name, op, values: this.list(op), at, ...(bareList ? { bareList } : {}) };
    }
    this.skipSpace();
    return { kind: 'check', field: name, op, values: [this.value(`a value after ${op}`)], at };
  }

  private operator(): Operator | undefined {
    this.skipSpace();
    for (const op of SYMBOL_OPERATORS) {
      if (this.text.startsWith(op, this.pos)) {
        this.pos += op.length;
        return op;
      }
    }
    for (const op of WORD_OPERATORS) {
      if (this.text.startsWith(op, this.pos) && !WORD_CHAR.test(this.text[this.pos + op.length] ?? '')) {
        if (UNSUPPORTED_OPERATORS.has(op)) throw this.error(`operator ${op} is not supported`);
        this.pos += op.length;
        return op as Operator;
      }
    }
    return undefined;
  }

  private list(op: string): ValueToken[] {
    this.skipSpace();
    if (this.text[this.pos] !== '(') {
      // `in list_name`, without parentheses.
      const token = this.value(`a list after ${op}`);
      if (token.quoted) throw this.error(`expected a list after ${op}`);
      return [token];
    }
    this.pos++;
    const values: ValueToken[] = [];
    this.skipSpace();
    if (this.text[this.pos] === ')') {
      this.pos++;
      return values;
    }
    for (;;) {
      this.skipSpace();
      values.push(this.value('a list item'));
      this.skipSpace();
      const c = this.text[this.pos];
      this.pos++;
      if (c === ')') return values;
      if (c !== ',') {
        this.pos--;
        throw this.error(this.atEnd() ? "missing ')' after the list" : `expected ',' or ')' in the list, got '${this.snippet()}'`);
      }
    }
  }

  /** A quoted string or a bare word (anything up to space, a parenthesis or a comma). */
  private value(what: string): ValueToken {
    const c = this.text[this.pos];
    if (c === '"' || c === "'") {
      const start = this.pos;
      let out = '';
      for (this.pos++; this.pos < this.text.length; this.pos++) {
        const d = this.text[this.pos]!;
        if (d === c) {
          this.pos++;
          return { text: out, quoted: true };
        }
        if (d === '\\' && this.pos + 1 < this.text.length) out += this.text[++this.pos];
        else out += d;
      }
      this.pos = start;
      throw this.error('unterminated string');
    }
    const m = /^[^\s(),]+/.exec(this.text.slice(this.pos));
    if (!m) throw this.error(this.atEnd() ? `expected ${what}` : `expected ${what}, got '${this.snippet()}'`);
    this.pos += m[0].length;
    return { text: m[0], quoted: false };
  }

  private keyword(word: string): boolean {
    this.skipSpace();
    if (!this.text.startsWith(word, this.pos)) return false;
    const next = this.text[this.pos + word.length] ?? '';
    if (WORD_CHAR.test(next)) return false;
    this.pos += word.length;
    return true;
  }

  private skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos]!)) this.pos++;
  }

  private atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  private snippet(): string {
    const rest = this.text.slice(this.pos).replace(/\s+/g, ' ');
    return rest.length > 20 ? `${rest.slice(0, 20)}...` : rest;
  }

  private error(message: string): ConditionSyntaxError {
    return new ConditionSyntaxError(message, this.pos);
  }
}

/**
 * Which event types a condition can hold for, so that the engine walks, for
 * each event, only the rules that may match its type. Each node gives two
 * over-approximations: the types for which it may hold and those for which it
 * may fail; `not` swaps them, so `not evt.type = connect` is known to hold
 * only for the other types. Only evt.type checks narrow anything (evt.type is
 * always present).
 */
import type { SecurityEventType } from '../../contract/security.ts';
import type { Expr } from './condition-compile.ts';

export const EVENT_TYPES: readonly SecurityEventType[] = ['execve', 'procexit', 'openat', 'openat2', 'connect', 'setuid'];

type TypeSet = ReadonlySet<SecurityEventType>;
const ALL: TypeSet = new Set(EVENT_TYPES);

/** The event types for which `expr` may hold. */
export function eventTypesOf(expr: Expr): TypeSet {
  return mayHold(expr, true);
}

function mayHold(expr: Expr, positive: boolean): TypeSet {
  switch (expr.kind) {
    case 'not':
      return mayHold(expr.item, !positive);
    case 'and':
    case 'or': {
      // A conjunction may hold where all may hold, and fail where any may fail; a disjunction the reverse.
      const sets = expr.items.map((i) => mayHold(i, positive));
      return (expr.kind === 'and') === positive ? intersect(sets) : union(sets);
    }
    case 'check': {
      const named = typeCheck(expr);
      if (!named) return ALL;
      return named.holds === positive ? named.types : complement(named.types);
    }
  }
}

/** For a check on evt.type: the types it names, and whether it holds for them (=, in) or for the others (!=). */
function typeCheck(expr: Extract<Expr, { kind: 'check' }>): { types: TypeSet; holds: boolean } | undefined {
  if (expr.field.name !== 'evt.type') return undefined;
  const named = new Set(EVENT_TYPES.filter((t) => expr.values.includes(t)));
  switch (expr.op) {
    case '=':
    case '==':
    case 'in':
      return { types: named, holds: true };
    case '!=':
      return { types: named, holds: false };
    default:
      return undefined;
  }
}

function intersect(sets: TypeSet[]): TypeSet {
  return new Set(EVENT_TYPES.filter((t) => sets.every((s) => s.has(t))));
}
function union(sets: TypeSet[]): TypeSet {
  return new Set(EVENT_TYPES.filter((t) => sets.some((s) => s.has(t))));
}
function complement(set: TypeSet): TypeSet {
  return new Set(EVENT_TYPES.filter((t) => !set.has(t)));
}

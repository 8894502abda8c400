/**
 * A rule's output: `%field` placeholders filled from the event (Falco style,
 * `<NA>` for a field the event does not have), and the fields it names as
 * Falco's output_fields (keyed by the field as written, null when absent).
 */
import type { SecurityEvent } from '../../contract/security.ts';
import { fieldNameLength, lookupField, type Field } from './fields.ts';

export const NOT_AVAILABLE = '<NA>';

export class OutputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutputError';
  }
}

/** An output template split once into text and fields. */
export interface CompiledOutput {
  /** Every field the output names, once each, in order of first use. */
  fields: readonly Field[];
  format(e: SecurityEvent): { text: string; fields: Record<string, string | number | boolean | null> };
}

/** Compiles an output template; throws OutputError on an unknown field. */
export function compileOutput(template: string): CompiledOutput {
  const parts: (string | Field)[] = [];
  const fields = new Map<string, Field>();
  let text = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    let length = c === '%' ? fieldNameLength(template, i + 1) : 0;
    if (length === 0) {
      text += c;
      continue;
    }
    let name = template.slice(i + 1, i + 1 + length);
    // A sentence may end right after a field: "user=%user.uid."
    while (name.endsWith('.')) name = name.slice(0, -1);
    length = name.length;
    const field = fields.get(name) ?? lookupField(name);
    if (!field) throw new OutputError(`unknown field %${name}`);
    fields.set(name, field);
    if (text) parts.push(text);
    text = '';
    parts.push(field);
    i += length;
  }
  if (text) parts.push(text);
  const named = [...fields.values()];
  return {
    fields: named,
    format(e) {
      const values: Record<string, string | number | boolean | null> = {};
      for (const f of named) values[f.name] = f.get(e) ?? null;
      let out = '';
      for (const p of parts) {
        if (typeof p === 'string') out += p;
        else {
          const v = values[p.name];
          out += v === null || v === undefined ? NOT_AVAILABLE : String(v);
        }
      }
      return { text: out, fields: values };
    },
  };
}

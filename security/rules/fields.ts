/**
 * The fields a rule condition or output may name (Falco's names), and how
 * each is read from a SecurityEvent. A field that does not apply to an event
 * (fd.name on an execve, k8s.pod.name of a host process) reads as undefined:
 * every comparison on it is false, as in Falco.
 */
import type { SecurityEvent } from '../../contract/security.ts';

export type FieldType = 'string' | 'number' | 'boolean';
export type FieldValue = string | number | boolean;
export type FieldGetter = (e: SecurityEvent) => FieldValue | undefined;

/** A field resolved from its name as a rule wrote it. */
export interface Field {
  /** The name as written (`k8s.pod.label[app]`): the key in output_fields. */
  name: string;
  type: FieldType;
  get: FieldGetter;
  /** Whether the field depends only on the pod (used to scope enforcement). */
  podScope: boolean;
}

// Open flag bits (x86-64/arm64 asm-generic values) and the names the sensor
// fills in file.flagNames (Falco's evt.arg.flags names).
const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const WRITE_FLAG_NAMES = new Set(['O_WRONLY', 'O_RDWR', 'O_CREAT', 'O_TRUNC']);

/** True when an open asks to write: O_WRONLY, O_RDWR, O_CREAT or O_TRUNC. */
function openWrite(e: SecurityEvent): boolean | undefined {
  if (!e.file) return undefined;
  const { flags, flagNames } = e.file;
  if (flagNames.some((n) => WRITE_FLAG_NAMES.has(n))) return true;
  return (flags & O_ACCMODE) === O_WRONLY || (flags & O_ACCMODE) === O_RDWR || (flags & (O_CREAT | O_TRUNC)) !== 0;
}

/** True when an open asks to read: O_RDONLY (access mode 0) or O_RDWR. */
function openRead(e: SecurityEvent): boolean | undefined {
  if (!e.file) return undefined;
  const { flags, flagNames } = e.file;
  if (flagNames.includes('O_RDWR') || flagNames.includes('O_RDONLY')) return true;
  if (flagNames.includes('O_WRONLY')) return false;
  return (flags & O_ACCMODE) !== O_WRONLY;
}

function dirname(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

interface FieldDef {
  type: FieldType;
  get: FieldGetter;
  podScope?: boolean;
}

/** The fixed fields, by name. */
const FIELDS: ReadonlyMap<string, FieldDef> = new Map<string, FieldDef>([
  ['evt.type', { type: 'string', get: (e) => e.type }],
  ['evt.time', { type: 'string', get: (e) => e.time }],
  // Every Sluice event is an exit event; Falco rules say `evt.dir = <` in their spawned_process macro.
  ['evt.dir', { type: 'string', get: () => '<' }],
  ['evt.is_open_write', { type: 'boolean', get: openWrite }],
  ['evt.is_open_read', { type: 'boolean', get: openRead }],
  ['evt.arg.flags', { type: 'string', get: (e) => (e.file ? e.file.flagNames.join('|') : undefined) }],
  // The uid before a setuid call or a setuid exec (absent when the event did not change it).
  ['evt.previous_uid', { type: 'number', get: (e) => e.proc.previousUid }],
  ['proc.name', { type: 'string', get: (e) => e.proc.name }],
  ['proc.exepath', { type: 'string', get: (e) => e.proc.exepath }],
  ['proc.pname', { type: 'string', get: (e) => e.proc.pname }],
  ['proc.args', { type: 'string', get: (e) => e.proc.args.slice(1).join(' ') }],
  ['proc.cmdline', { type: 'string', get: (e) => [e.proc.name, ...e.proc.args.slice(1)].join(' ') }],
  ['proc.pid', { type: 'number', get: (e) => e.proc.pid }],
  ['proc.ppid', { type: 'number', get: (e) => e.proc.ppid }],
  ['user.uid', { type: 'number', get: (e) => e.proc.uid }],
  ['fd.name', { type: 'string', get: (e) => e.file?.path }],
  ['fd.directory', { type: 'string', get: (e) => (e.file ? dirname(e.file.path) : undefined) }],
  ['fd.filename', { type: 'string', get: (e) => (e.file ? e.file.path.slice(e.file.path.lastIndexOf('/') + 1) : undefined) }],
  ['fd.sip', { type: 'string', get: (e) => e.connect?.ip }],
  ['fd.sport', { type: 'number', get: (e) => e.connect?.port }],
  ['fd.l4proto', { type: 'string', get: (e) => e.connect?.protocol.toLowerCase() }],
  // Falco's convention: a host process has container.id "host". A pod whose
  // sandbox id is unknown reads "", so `container.id != host` still holds.
  ['container.id', { type: 'string', get: (e) => (e.host || !e.pod ? 'host' : (e.pod.containerId ?? '')), podScope: true }],
  ['k8s.ns.name', { type: 'string', get: (e) => e.pod?.namespace, podScope: true }],
  ['k8s.pod.name', { type: 'string', get: (e) => e.pod?.name, podScope: true }],
]);

const LABEL_DOT = 'k8s.pod.label.';
const LABEL_BRACKET = /^k8s\.pod\.label\[([^\]]+)\]$/;

/** Every fixed field name (pod labels come in addition: k8s.pod.label.KEY, k8s.pod.label[KEY]). */
export const FIELD_NAMES: readonly string[] = [...FIELDS.keys()];

/** The field a name denotes, or undefined when there is no such field. */
export function lookupField(name: string): Field | undefined {
  const def = FIELDS.get(name);
  if (def) return { name, type: def.type, get: def.get, podScope: def.podScope ?? false };
  const key = name.startsWith(LABEL_DOT) ? name.slice(LABEL_DOT.length) : LABEL_BRACKET.exec(name)?.[1];
  if (key === undefined || key === '') return undefined;
  return { name, type: 'string', get: (e) => e.pod?.labels[key], podScope: true };
}

/**
 * The length of the field name at the start of `text` (0 when none):
 * `[A-Za-z_][A-Za-z0-9_.]*`, then for pod labels the rest of the key
 * (`k8s.pod.label.app.kubernetes.io/name`) or a `[key]` argument.
 */
export function fieldNameLength(text: string, start: number): number {
  const m = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(start));
  if (!m) return 0;
  let end = start + m[0].length;
  if (text.startsWith('[', end)) {
    const close = text.indexOf(']', end);
    if (close > end + 1) end = close + 1;
  } else if (m[0].startsWith(LABEL_DOT)) {
    const rest = /^[A-Za-z0-9_.\-/]*/.exec(text.slice(end));
    end += rest ? rest[0].length : 0;
  }
  return end - start;
}

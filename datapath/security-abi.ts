/**
 * The TypeScript mirror of bpf/security.h, the runtime security object's
 * kernel ABI: event records, enforcement map keys and values, their limits,
 * and the encoders and decoders the agent uses. test/security-abi.test.ts
 * compares the layouts here with the BTF of the object the Makefile builds.
 * Integers are in host order (little-endian), except where a field says so.
 */
import type { StructLayout } from './abi.ts';

/** enum sluice_security_limits. */
export const SEC_COMM_LEN = 16;
export const SEC_PATH_LEN = 256;
export const SEC_ARGS_LEN = 512;
export const SEC_KILL_NAME_LEN = 64;
export const SEC_MAX_PORTS = 16;
export const SEC_MAX_KILL = 4096;
export const SEC_MAX_CONNECT_RULES = 4096;
export const SEC_MAX_PENDING_SETUID = 8192;
export const SEC_RINGBUF_BYTES = 8 << 20;
/** Event budgets per network namespace and kind of event (struct sec_budget): a pod's, and the host's. */
export const SEC_POD_EVENTS_PER_SEC = 5000;
export const SEC_POD_EVENTS_BURST = 5000;
export const SEC_HOST_EVENTS_PER_SEC = 20000;
export const SEC_HOST_EVENTS_BURST = 20000;
export const SEC_MAX_BUDGETS = 8192;

/** enum sluice_sec_event_type: sec_header.type. */
export const SecEventType = { EXEC: 1, EXIT: 2, OPEN: 3, SETUID: 4, CONNECT: 5 } as const;

/** enum sluice_sec_event_flag: sec_header.flags. */
export const SecEventFlag = { KILLED: 1, DENIED: 2, ARGS_CUT: 4, OPENAT2: 8, CWD_RESOLVED: 16, SOCKET: 32 } as const;

/** enum sluice_sec_config_flag: security_config.flags. */
export const SecConfigFlag = { HOST_OPENS: 1, HOST_CONNECTS: 2 } as const;

/** enum sluice_sec_connect_mode: connect_rule.mode. */
export const SecConnectMode = { ALLOW_ONLY: 1, DENY: 2 } as const;

/** enum sluice_sec_bucket: sec_budget_key.bucket, one budget per kind of event. */
export const SecBucket = { PROCESS: 0, FILES: 1 } as const;
/** SLUICE_SEC_BUCKET_MAX. */
export const SEC_BUCKET_MAX = 2;

/** enum sluice_sec_stat: indexes of security_stats. */
export const SecStat = { LOST_BUDGET: 0, LOST_RINGBUF: 1, LOST_SETUID: 2, KILLED: 3, DENIED: 4 } as const;
/** SLUICE_SEC_STAT_MAX. */
export const SEC_STAT_MAX = 5;

export const SEC_HEADER: StructLayout = {
  name: 'sec_header',
  size: 56,
  members: { time_ns: 0, type: 8, flags: 12, netns: 16, pid: 20, tid: 24, ppid: 28, uid: 32, euid: 36, comm: 40 },
};
export const SEC_EXEC: StructLayout = {
  name: 'sec_exec',
  size: 848,
  members: { h: 0, pcomm: 56, filename_len: 72, args_len: 76, filename: 80, args: 336 },
};
export const SEC_EXIT: StructLayout = { name: 'sec_exit', size: 64, members: { h: 0, exit_code: 56, reserved: 60 } };
export const SEC_OPEN: StructLayout = { name: 'sec_open', size: 328, members: { h: 0, dfd: 56, path_len: 60, flags: 64, path: 72 } };
export const SEC_SETUID: StructLayout = {
  name: 'sec_setuid',
  size: 72,
  members: { h: 0, old_uid: 56, old_euid: 60, syscall: 64, reserved: 68 },
};
export const SEC_CONNECT: StructLayout = { name: 'sec_connect', size: 80, members: { h: 0, family: 56, port: 58, protocol: 60, addr: 64 } };
export const SECURITY_CONFIG: StructLayout = { name: 'security_config', size: 8, members: { host_netns: 0, flags: 4 } };
export const KILL_KEY: StructLayout = { name: 'kill_key', size: 68, members: { netns: 0, name: 4 } };
export const KILL_VALUE: StructLayout = { name: 'kill_value', size: 4, members: { rule: 0 } };
export const SEC_BUDGET_KEY: StructLayout = { name: 'sec_budget_key', size: 8, members: { netns: 0, bucket: 4 } };
export const SEC_BUDGET: StructLayout = { name: 'sec_budget', size: 32, members: { tokens: 0, last_ns: 8, lost_budget: 16, lost_ringbuf: 24 } };
export const CONNECT_RULE: StructLayout = { name: 'connect_rule', size: 44, members: { mode: 0, nports: 4, ports: 8, rule: 40 } };

/** Key and value sizes of the maps keyed by a u32 (security_config's index, security_connect's netns, security_stats' index). */
export const SEC_U32_KEY_SIZE = 4;
export const SEC_STAT_VALUE_SIZE = 8;

/** The header every record starts with. */
export interface SecHeader {
  /** bpf_ktime_get_ns(): CLOCK_MONOTONIC nanoseconds. */
  timeNs: bigint;
  type: number;
  flags: number;
  netns: number;
  pid: number;
  tid: number;
  ppid: number;
  uid: number;
  euid: number;
  comm: string;
}

/** A decoded record of the security_events ring buffer. */
export type SecRecord =
  | { kind: 'exec'; h: SecHeader; pcomm: string; filename: string; args: string[]; argsCut: boolean; killed: boolean }
  | { kind: 'exit'; h: SecHeader; exitCode: number; signal: number }
  | { kind: 'open'; h: SecHeader; dfd: number; path: string; flags: number; openat2: boolean }
  | { kind: 'setuid'; h: SecHeader; oldUid: number; oldEuid: number; syscall: number }
  | { kind: 'connect'; h: SecHeader; family: 4 | 6; port: number; protocol: number; addr: Buffer; denied: boolean; socket: boolean };

const AF_INET = 2;

/** A NUL-terminated string in a fixed field (invalid UTF-8 replaced). */
function cString(buf: Buffer, offset: number, max: number): string {
  const field = buf.subarray(offset, offset + max);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString('utf8');
}

function need(buf: Buffer, layout: StructLayout): void {
  if (buf.length < layout.size) throw new Error(`struct ${layout.name}: ${buf.length} bytes, need ${layout.size}`);
}

function decodeHeader(buf: Buffer): SecHeader {
  need(buf, SEC_HEADER);
  const m = SEC_HEADER.members;
  return {
    timeNs: buf.readBigUInt64LE(m.time_ns!),
    type: buf.readUInt32LE(m.type!),
    flags: buf.readUInt32LE(m.flags!),
    netns: buf.readUInt32LE(m.netns!),
    pid: buf.readUInt32LE(m.pid!),
    tid: buf.readUInt32LE(m.tid!),
    ppid: buf.readUInt32LE(m.ppid!),
    uid: buf.readUInt32LE(m.uid!),
    euid: buf.readUInt32LE(m.euid!),
    comm: cString(buf, m.comm!, SEC_COMM_LEN),
  };
}

/** argv from the NUL-separated argument area (a cut last argument kept as far as it goes). */
export function splitArgs(area: Buffer): string[] {
  if (area.length === 0) return [];
  const text = area.toString('utf8');
  const parts = text.split('\0');
  if (text.endsWith('\0')) parts.pop();
  return parts;
}

/** Decodes one ring buffer record; null for a type this agent does not know (a newer object). Throws on a short record. */
export function decodeSecRecord(buf: Buffer): SecRecord | null {
  const h = decodeHeader(buf);
  switch (h.type) {
    case SecEventType.EXEC: {
      need(buf, SEC_EXEC);
      const m = SEC_EXEC.members;
      const argsLen = Math.min(buf.readUInt32LE(m.args_len!), SEC_ARGS_LEN);
      return {
        kind: 'exec',
        h,
        pcomm: cString(buf, m.pcomm!, SEC_COMM_LEN),
        filename: cString(buf, m.filename!, SEC_PATH_LEN),
        args: splitArgs(buf.subarray(m.args!, m.args! + argsLen)),
        argsCut: (h.flags & SecEventFlag.ARGS_CUT) !== 0,
        killed: (h.flags & SecEventFlag.KILLED) !== 0,
      };
    }
    case SecEventType.EXIT: {
      need(buf, SEC_EXIT);
      const status = buf.readUInt32LE(SEC_EXIT.members.exit_code!);
      return { kind: 'exit', h, exitCode: (status >> 8) & 0xff, signal: status & 0x7f };
    }
    case SecEventType.OPEN: {
      need(buf, SEC_OPEN);
      const m = SEC_OPEN.members;
      return {
        kind: 'open',
        h,
        dfd: buf.readInt32LE(m.dfd!),
        path: cString(buf, m.path!, SEC_PATH_LEN),
        flags: Number(buf.readBigUInt64LE(m.flags!) & 0xffffffffn),
        openat2: (h.flags & SecEventFlag.OPENAT2) !== 0,
      };
    }
    case SecEventType.SETUID: {
      need(buf, SEC_SETUID);
      const m = SEC_SETUID.members;
      return { kind: 'setuid', h, oldUid: buf.readUInt32LE(m.old_uid!), oldEuid: buf.readUInt32LE(m.old_euid!), syscall: buf.readUInt32LE(m.syscall!) };
    }
    case SecEventType.CONNECT: {
      need(buf, SEC_CONNECT);
      const m = SEC_CONNECT.members;
      const family = buf.readUInt16LE(m.family!) === AF_INET ? 4 : 6;
      return {
        kind: 'connect',
        h,
        family,
        port: buf.readUInt16LE(m.port!),
        protocol: buf.readUInt32LE(m.protocol!),
        addr: Buffer.from(buf.subarray(m.addr!, m.addr! + (family === 4 ? 4 : 16))),
        denied: (h.flags & SecEventFlag.DENIED) !== 0,
        socket: (h.flags & SecEventFlag.SOCKET) !== 0,
      };
    }
    default:
      return null;
  }
}

/** The security_config value. */
export function encodeSecurityConfig(hostNetns: number, flags: number): Buffer {
  const buf = Buffer.alloc(SECURITY_CONFIG.size);
  buf.writeUInt32LE(hostNetns, SECURITY_CONFIG.members.host_netns!);
  buf.writeUInt32LE(flags, SECURITY_CONFIG.members.flags!);
  return buf;
}

/** A u32 key (security_config index 0, a security_connect netns, a security_stats index). */
export function encodeU32Key(n: number): Buffer {
  const key = Buffer.alloc(SEC_U32_KEY_SIZE);
  key.writeUInt32LE(n);
  return key;
}

/** A security_kill key; throws when the name does not fit (63 bytes) or holds a NUL or a '/'. */
export function encodeKillKey(netns: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length === 0 || bytes.length >= SEC_KILL_NAME_LEN || bytes.includes(0) || name.includes('/')) {
    throw new Error(`kill key: binary name ${JSON.stringify(name)} must be a file name of 1 to ${SEC_KILL_NAME_LEN - 1} bytes`);
  }
  const key = Buffer.alloc(KILL_KEY.size);
  key.writeUInt32LE(netns, KILL_KEY.members.netns!);
  bytes.copy(key, KILL_KEY.members.name!);
  return key;
}

export function decodeKillKey(key: Buffer): { netns: number; name: string } {
  return { netns: key.readUInt32LE(KILL_KEY.members.netns!), name: cString(key, KILL_KEY.members.name!, SEC_KILL_NAME_LEN) };
}

export function encodeKillValue(rule: number): Buffer {
  const buf = Buffer.alloc(KILL_VALUE.size);
  buf.writeUInt32LE(rule, KILL_VALUE.members.rule!);
  return buf;
}

/** A security_connect value: which ports the namespace may (ALLOW_ONLY) or may not (DENY) connect to. */
export interface ConnectRuleValue {
  mode: 'allow-only' | 'deny';
  ports: number[];
  rule: number;
}

export function encodeConnectRule(r: ConnectRuleValue): Buffer {
  if (r.ports.length > SEC_MAX_PORTS) throw new Error(`deny-connect: ${r.ports.length} ports, at most ${SEC_MAX_PORTS}`);
  const m = CONNECT_RULE.members;
  const buf = Buffer.alloc(CONNECT_RULE.size);
  buf.writeUInt32LE(r.mode === 'allow-only' ? SecConnectMode.ALLOW_ONLY : SecConnectMode.DENY, m.mode!);
  buf.writeUInt32LE(r.ports.length, m.nports!);
  r.ports.forEach((p, i) => buf.writeUInt16LE(p, m.ports! + 2 * i));
  buf.writeUInt32LE(r.rule, m.rule!);
  return buf;
}

export function decodeConnectRule(buf: Buffer): ConnectRuleValue {
  const m = CONNECT_RULE.members;
  const n = Math.min(buf.readUInt32LE(m.nports!), SEC_MAX_PORTS);
  const ports = Array.from({ length: n }, (_, i) => buf.readUInt16LE(m.ports! + 2 * i));
  return { mode: buf.readUInt32LE(m.mode!) === SecConnectMode.ALLOW_ONLY ? 'allow-only' : 'deny', ports, rule: buf.readUInt32LE(m.rule!) };
}

/** One security_budget entry: whose (netns), which kind, and what it lost. */
export interface SecBudgetEntry {
  netns: number;
  bucket: number;
  tokens: number;
  lostBudget: number;
  lostRingbuf: number;
}

export function decodeSecBudget(key: Buffer, value: Buffer): SecBudgetEntry {
  need(key, SEC_BUDGET_KEY);
  need(value, SEC_BUDGET);
  const k = SEC_BUDGET_KEY.members;
  const v = SEC_BUDGET.members;
  return {
    netns: key.readUInt32LE(k.netns!),
    bucket: key.readUInt32LE(k.bucket!),
    tokens: Number(value.readBigInt64LE(v.tokens!)),
    lostBudget: Number(value.readBigUInt64LE(v.lost_budget!)),
    lostRingbuf: Number(value.readBigUInt64LE(v.lost_ringbuf!)),
  };
}

/** The sum of the per-CPU values of one security_stats slot. */
export function sumSecStat(slots: Buffer[]): number {
  return slots.reduce((sum, slot) => sum + Number(slot.readBigUInt64LE(0)), 0);
}

/** An encoded record header (tests: the programs write these). */
export function encodeSecHeader(h: SecHeader, into: Buffer): void {
  const m = SEC_HEADER.members;
  into.writeBigUInt64LE(h.timeNs, m.time_ns!);
  into.writeUInt32LE(h.type, m.type!);
  into.writeUInt32LE(h.flags, m.flags!);
  into.writeUInt32LE(h.netns, m.netns!);
  into.writeUInt32LE(h.pid, m.pid!);
  into.writeUInt32LE(h.tid, m.tid!);
  into.writeUInt32LE(h.ppid, m.ppid!);
  into.writeUInt32LE(h.uid, m.uid!);
  into.writeUInt32LE(h.euid, m.euid!);
  Buffer.from(h.comm.slice(0, SEC_COMM_LEN - 1), 'utf8').copy(into, m.comm!);
}

// The TS mirror of the runtime security object (datapath/security-abi.ts) must match
// bpf/security.h as the compiler laid it out: read back through the BTF of the object the
// Makefile builds, so a change on either side alone fails here. No root: clang and bpftool only.
import { beforeAll, describe, expect, it } from 'vitest';
import type { MakefileObject } from './support/bpf-build.ts';
import { btfOfMakefileBuild, expectSameLayout, type ObjectBtf } from './support/btf-layout.ts';
import {
  CONNECT_RULE,
  KILL_KEY,
  KILL_VALUE,
  SECURITY_CONFIG,
  SEC_ARGS_LEN,
  SEC_COMM_LEN,
  SEC_CONNECT,
  SEC_BUDGET,
  SEC_BUDGET_KEY,
  SEC_HOST_EVENTS_BURST,
  SEC_HOST_EVENTS_PER_SEC,
  SEC_MAX_BUDGETS,
  SEC_POD_EVENTS_BURST,
  SEC_POD_EVENTS_PER_SEC,
  SEC_EXEC,
  SEC_EXIT,
  SEC_HEADER,
  SEC_KILL_NAME_LEN,
  SEC_MAX_CONNECT_RULES,
  SEC_MAX_KILL,
  SEC_MAX_PENDING_SETUID,
  SEC_MAX_PORTS,
  SEC_OPEN,
  SEC_PATH_LEN,
  SEC_RINGBUF_BYTES,
  SEC_SETUID,
  SEC_BUCKET_MAX,
  SEC_STAT_MAX,
  SEC_STAT_VALUE_SIZE,
  SEC_U32_KEY_SIZE,
  SecBucket,
  SecConfigFlag,
  SecConnectMode,
  SecEventFlag,
  SecEventType,
  SecStat,
  decodeConnectRule,
  decodeSecBudget,
  decodeKillKey,
  decodeSecRecord,
  encodeConnectRule,
  encodeKillKey,
  encodeSecHeader,
  type SecHeader,
} from '../datapath/security-abi.ts';
import type { StructLayout } from '../datapath/abi.ts';

const SECURITY_OBJECT: MakefileObject = { variable: 'SECURITY_OBJ', file: 'sluice-security.bpf.o' };
let btf: ObjectBtf;

beforeAll(() => {
  btf = btfOfMakefileBuild(SECURITY_OBJECT);
});

describe('security-abi.ts mirrors bpf/security.h', () => {
  for (const mirror of [SEC_HEADER, SEC_EXEC, SEC_EXIT, SEC_OPEN, SEC_SETUID, SEC_CONNECT, SECURITY_CONFIG, KILL_KEY, KILL_VALUE, CONNECT_RULE, SEC_BUDGET_KEY, SEC_BUDGET]) {
    it(`struct ${mirror.name} has the same size, members and offsets`, () => {
      expectSameLayout(btf.structLayout(mirror.name), mirror);
    });
  }

  it('the enums have the values of security-abi.ts', () => {
    expect(btf.enumValues('sluice_security_limits')).toEqual({
      SLUICE_SEC_COMM_LEN: SEC_COMM_LEN,
      SLUICE_SEC_PATH_LEN: SEC_PATH_LEN,
      SLUICE_SEC_ARGS_LEN: SEC_ARGS_LEN,
      SLUICE_SEC_KILL_NAME_LEN: SEC_KILL_NAME_LEN,
      SLUICE_SEC_MAX_PORTS: SEC_MAX_PORTS,
      SLUICE_SEC_MAX_KILL: SEC_MAX_KILL,
      SLUICE_SEC_MAX_CONNECT_RULES: SEC_MAX_CONNECT_RULES,
      SLUICE_SEC_MAX_PENDING_SETUID: SEC_MAX_PENDING_SETUID,
      SLUICE_SEC_RINGBUF_BYTES: SEC_RINGBUF_BYTES,
      SLUICE_SEC_POD_EVENTS_PER_SEC: SEC_POD_EVENTS_PER_SEC,
      SLUICE_SEC_POD_EVENTS_BURST: SEC_POD_EVENTS_BURST,
      SLUICE_SEC_HOST_EVENTS_PER_SEC: SEC_HOST_EVENTS_PER_SEC,
      SLUICE_SEC_HOST_EVENTS_BURST: SEC_HOST_EVENTS_BURST,
      SLUICE_SEC_MAX_BUDGETS: SEC_MAX_BUDGETS,
    });
    const prefixed = (prefix: string, o: Record<string, number>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [prefix + k, v]));
    expect(btf.enumValues('sluice_sec_event_type')).toEqual(prefixed('SLUICE_SEC_', SecEventType));
    expect(btf.enumValues('sluice_sec_event_flag')).toEqual(prefixed('SLUICE_SEC_F_', SecEventFlag));
    expect(btf.enumValues('sluice_sec_config_flag')).toEqual(prefixed('SLUICE_SEC_CFG_', SecConfigFlag));
    expect(btf.enumValues('sluice_sec_connect_mode')).toEqual(prefixed('SLUICE_SEC_CONNECT_', SecConnectMode));
    expect(btf.enumValues('sluice_sec_stat')).toEqual({ ...prefixed('SLUICE_SEC_STAT_', SecStat), SLUICE_SEC_STAT_MAX: SEC_STAT_MAX });
    expect(btf.enumValues('sluice_sec_bucket')).toEqual({ ...prefixed('SLUICE_SEC_BUCKET_', SecBucket), SLUICE_SEC_BUCKET_MAX: SEC_BUCKET_MAX });
  });

  it('the maps have the key and value sizes and capacities the agent opens them with', () => {
    const kill = btf.mapDefinition('security_kill');
    expect(btf.sizeOfType(kill, 'key')).toBe(KILL_KEY.size);
    expect(btf.sizeOfType(kill, 'value')).toBe(KILL_VALUE.size);
    expect(btf.uintOf(kill, 'max_entries')).toBe(SEC_MAX_KILL);
    const connect = btf.mapDefinition('security_connect');
    expect(btf.sizeOfType(connect, 'key')).toBe(SEC_U32_KEY_SIZE);
    expect(btf.sizeOfType(connect, 'value')).toBe(CONNECT_RULE.size);
    expect(btf.uintOf(connect, 'max_entries')).toBe(SEC_MAX_CONNECT_RULES);
    const config = btf.mapDefinition('security_config');
    expect(btf.sizeOfType(config, 'value')).toBe(SECURITY_CONFIG.size);
    const stats = btf.mapDefinition('security_stats');
    expect(btf.sizeOfType(stats, 'value')).toBe(SEC_STAT_VALUE_SIZE);
    expect(btf.uintOf(stats, 'max_entries')).toBe(SEC_STAT_MAX);
    expect(btf.uintOf(btf.mapDefinition('security_events'), 'max_entries')).toBe(SEC_RINGBUF_BYTES);
    const budget = btf.mapDefinition('security_budget');
    expect(btf.sizeOfType(budget, 'key')).toBe(SEC_BUDGET_KEY.size);
    expect(btf.sizeOfType(budget, 'value')).toBe(SEC_BUDGET.size);
    expect(btf.uintOf(budget, 'max_entries')).toBe(SEC_MAX_BUDGETS);
  });

  it('a layout that differs from the compiled one fails the comparison', () => {
    expect(btf.structLayout('sec_open').members).not.toEqual({ ...SEC_OPEN.members, flags: 60, path_len: 64 });
  });
});

const HEADER: SecHeader = { timeNs: 5n, type: 0, flags: 0, netns: 4026532000, pid: 10, tid: 11, ppid: 1, uid: 1000, euid: 0, comm: 'sh' };

function record(layout: StructLayout, h: SecHeader): Buffer {
  const buf = Buffer.alloc(layout.size);
  encodeSecHeader(h, buf);
  return buf;
}

describe('decoding records', () => {
  it('an exec: filename, the NUL-separated argv, parent comm, killed', () => {
    const buf = record(SEC_EXEC, { ...HEADER, type: SecEventType.EXEC, flags: SecEventFlag.KILLED });
    const m = SEC_EXEC.members;
    buf.write('bash', m.pcomm!);
    buf.write('/bin/sh', m.filename!);
    const args = Buffer.from('sh\0-c\0echo hi\0');
    args.copy(buf, m.args!);
    buf.writeUInt32LE(args.length, m.args_len!);
    expect(decodeSecRecord(buf)).toMatchObject({ kind: 'exec', pcomm: 'bash', filename: '/bin/sh', args: ['sh', '-c', 'echo hi'], killed: true, argsCut: false, h: { netns: 4026532000, pid: 10, comm: 'sh' } });
  });

  it('an exit splits the wait status into code and signal', () => {
    const buf = record(SEC_EXIT, { ...HEADER, type: SecEventType.EXIT });
    buf.writeUInt32LE(9, SEC_EXIT.members.exit_code!);
    expect(decodeSecRecord(buf)).toMatchObject({ kind: 'exit', exitCode: 0, signal: 9 });
    buf.writeUInt32LE(3 << 8, SEC_EXIT.members.exit_code!);
    expect(decodeSecRecord(buf)).toMatchObject({ kind: 'exit', exitCode: 3, signal: 0 });
  });

  it('an open, a connect; an unknown type is null, a short record throws', () => {
    const open = record(SEC_OPEN, { ...HEADER, type: SecEventType.OPEN });
    open.writeInt32LE(-100, SEC_OPEN.members.dfd!);
    open.writeBigUInt64LE(0o101n, SEC_OPEN.members.flags!);
    open.write('etc/shadow', SEC_OPEN.members.path!);
    expect(decodeSecRecord(open)).toMatchObject({ kind: 'open', dfd: -100, flags: 0o101, path: 'etc/shadow', openat2: false });
    const c = record(SEC_CONNECT, { ...HEADER, type: SecEventType.CONNECT, flags: SecEventFlag.DENIED });
    c.writeUInt16LE(2, SEC_CONNECT.members.family!);
    c.writeUInt16LE(443, SEC_CONNECT.members.port!);
    c.writeUInt32LE(6, SEC_CONNECT.members.protocol!);
    Buffer.from([10, 0, 0, 1]).copy(c, SEC_CONNECT.members.addr!);
    expect(decodeSecRecord(c)).toMatchObject({ kind: 'connect', family: 4, port: 443, protocol: 6, addr: Buffer.from([10, 0, 0, 1]), denied: true, socket: false });
    c.writeUInt32LE(SecEventFlag.DENIED | SecEventFlag.SOCKET, SEC_HEADER.members.flags!);
    expect(decodeSecRecord(c)).toMatchObject({ kind: 'connect', denied: true, socket: true });
    expect(decodeSecRecord(record(SEC_EXIT, { ...HEADER, type: 99 }))).toBeNull();
    expect(() => decodeSecRecord(Buffer.alloc(60).fill(0).fill(1, 8, 9))).toThrow(/sec_exec/);
  });

  it('a budget entry: its namespace, kind and losses', () => {
    const key = Buffer.alloc(SEC_BUDGET_KEY.size);
    key.writeUInt32LE(4026532001, SEC_BUDGET_KEY.members.netns!);
    key.writeUInt32LE(SecBucket.FILES, SEC_BUDGET_KEY.members.bucket!);
    const value = Buffer.alloc(SEC_BUDGET.size);
    value.writeBigInt64LE(-1n, SEC_BUDGET.members.tokens!);
    value.writeBigUInt64LE(12n, SEC_BUDGET.members.lost_budget!);
    value.writeBigUInt64LE(3n, SEC_BUDGET.members.lost_ringbuf!);
    expect(decodeSecBudget(key, value)).toEqual({ netns: 4026532001, bucket: SecBucket.FILES, tokens: -1, lostBudget: 12, lostRingbuf: 3 });
  });

  it('kill keys and connect rules round-trip; a name with a slash or too long is refused', () => {
    expect(decodeKillKey(encodeKillKey(7, 'nc'))).toEqual({ netns: 7, name: 'nc' });
    expect(() => encodeKillKey(7, '/usr/bin/nc')).toThrow(/file name/);
    expect(() => encodeKillKey(7, 'x'.repeat(SEC_KILL_NAME_LEN))).toThrow(/file name/);
    const rule = { mode: 'allow-only' as const, ports: [80, 443], rule: 3 };
    expect(decodeConnectRule(encodeConnectRule(rule))).toEqual(rule);
    expect(() => encodeConnectRule({ mode: 'deny', ports: new Array<number>(SEC_MAX_PORTS + 1).fill(1), rule: 0 })).toThrow(/at most/);
  });
});

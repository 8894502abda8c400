/**
 * Turns a decoded kernel record (datapath/security-abi.ts) into the
 * contract's SecurityEvent: the pod by netns inode, the host by the agent's
 * own netns inode, the process's binary and arguments from its exec. The
 * programs make a cwd-relative open absolute; a path relative to another
 * directory fd (or a cwd too deep for them) is made absolute here from /proc
 * while the process is still there to ask, else kept as given.
 */
import { isAbsolute, join, normalize } from 'node:path';
import { readlinkSync } from 'node:fs';
import type { SecurityEvent, SecurityEventType, SecurityPod } from '../../contract/security.ts';
import type { SecRecord } from '../../datapath/security-abi.ts';
import { formatIp } from '../../lib/ip-bytes.ts';
import type { IndexedPod } from './pod-index.ts';
import type { ProcessInfo } from './process-table.ts';

const AT_FDCWD = -100;
const IPPROTO_TCP = 6;
const IPPROTO_SCTP = 132;

/** O_* flags by value (x86-64 and the generic table), O_ACCMODE apart. */
const OPEN_FLAGS: [number, string][] = [
  [0o100, 'O_CREAT'],
  [0o200, 'O_EXCL'],
  [0o400, 'O_NOCTTY'],
  [0o1000, 'O_TRUNC'],
  [0o2000, 'O_APPEND'],
  [0o4000, 'O_NONBLOCK'],
  [0o10000, 'O_DSYNC'],
  [0o20000, 'O_ASYNC'],
  [0o40000, 'O_DIRECT'],
  [0o100000, 'O_LARGEFILE'],
  [0o200000, 'O_DIRECTORY'],
  [0o400000, 'O_NOFOLLOW'],
  [0o1000000, 'O_NOATIME'],
  [0o2000000, 'O_CLOEXEC'],
  [0o4000000, 'O_SYNC'],
  [0o10000000, 'O_PATH'],
  [0o20000000, 'O_TMPFILE'],
];
const ACCESS_MODES = ['O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_ACCMODE'];

/** The names of open(2) flags, the access mode first (O_RDONLY when none is set). */
export function openFlagNames(flags: number): string[] {
  const names = [ACCESS_MODES[flags & 3]!];
  for (const [bit, name] of OPEN_FLAGS) if ((flags & bit) === bit) names.push(name);
  return names;
}

/** What the builder asks of the rest of the sensor. */
export interface EventContext {
  pod(inode: number): IndexedPod | undefined;
  labels(namespace: string, pod: string): Record<string, string>;
  process(pid: number): ProcessInfo | null;
  /** Wall-clock ms at boot: record times are CLOCK_MONOTONIC. */
  bootOffsetMs: number;
  /** readlink(2), swappable in tests. */
  readlink?: (path: string) => string;
}

function evtType(r: SecRecord): SecurityEventType {
  switch (r.kind) {
    case 'exec':
      return 'execve';
    case 'exit':
      return 'procexit';
    case 'open':
      return r.openat2 ? 'openat2' : 'openat';
    case 'setuid':
      return 'setuid';
    case 'connect':
      return 'connect';
  }
}

/**
 * A path as the process meant it: relative ones joined to its cwd (or dirfd)
 * when it can still be read; '.' and '..' taken out as Falco does (so that
 * /tmp/../etc/shadow is /etc/shadow to the rules).
 */
export function absolutePath(path: string, pid: number, dfd: number, readlink: (p: string) => string): string {
  if (path === '') return path;
  if (isAbsolute(path)) return normalize(path);
  try {
    const base = readlink(dfd === AT_FDCWD ? `/proc/${pid}/cwd` : `/proc/${pid}/fd/${dfd}`);
    return join(base, path);
  } catch {
    return path;
  }
}

/** The event of a record, and for an exec what the process table should remember. */
export function buildEvent(r: SecRecord, ctx: EventContext): { event: SecurityEvent; exec?: ProcessInfo } {
  const readlink = ctx.readlink ?? readlinkSync;
  const h = r.h;
  const indexed = ctx.pod(h.netns);
  const pod: SecurityPod | undefined = indexed && {
    namespace: indexed.namespace,
    name: indexed.name,
    labels: ctx.labels(indexed.namespace, indexed.name),
    containerId: indexed.containerId,
    netnsInode: h.netns,
  };
  let exec: ProcessInfo | undefined;
  let known: ProcessInfo | null;
  if (r.kind === 'exec') {
    exec = { exepath: absolutePath(r.filename, h.pid, AT_FDCWD, readlink), args: r.args, pname: r.pcomm };
    known = exec;
  } else {
    known = ctx.process(h.pid);
  }
  const event: SecurityEvent = {
    time: new Date(ctx.bootOffsetMs + Number(h.timeNs / 1_000_000n)).toISOString(),
    type: evtType(r),
    proc: {
      pid: h.pid,
      ppid: h.ppid,
      uid: h.uid,
      name: h.comm,
      exepath: known?.exepath ?? '',
      args: known?.args ?? [],
      pname: known?.pname ?? '',
    },
    // No pod's: the host's own namespace, or one no endpoint registered.
    host: pod === undefined,
  };
  if (pod) event.pod = pod;
  switch (r.kind) {
    case 'exec':
      // A setuid binary: it runs as its effective uid; the real one is what it was.
      if (h.euid !== h.uid) {
        event.proc.uid = h.euid;
        event.proc.previousUid = h.uid;
      }
      if (r.killed) event.enforced = 'killed';
      break;
    case 'exit':
      event.exit = { code: r.exitCode, signal: r.signal };
      break;
    case 'open':
      event.file = { path: absolutePath(r.path, h.pid, r.dfd, readlink), flags: r.flags, flagNames: openFlagNames(r.flags) };
      break;
    case 'setuid':
      // The kernel reports a real or effective uid that became 0: the event says which, as uid and previousUid.
      if (r.oldUid !== 0 && h.uid === 0) {
        event.proc.uid = 0;
        event.proc.previousUid = r.oldUid;
      } else {
        event.proc.uid = h.euid;
        event.proc.previousUid = r.oldEuid;
      }
      break;
    case 'connect':
      if (r.socket) {
        // A raw or SCTP socket refused at socket(): no destination yet.
        const sctp = r.protocol === IPPROTO_SCTP;
        event.connect = { ip: formatIp(r.addr), port: 0, family: r.family, protocol: sctp ? 'SCTP' : 'RAW', socket: sctp ? 'sctp' : 'raw' };
      } else {
        event.connect = { ip: formatIp(r.addr), port: r.port, family: r.family, protocol: r.protocol === IPPROTO_TCP ? 'TCP' : 'UDP' };
      }
      if (r.denied) event.enforced = 'denied';
      break;
  }
  return exec ? { event, exec } : { event };
}

/**
 * Loads the runtime security object (bpf/security.c) and attaches its
 * programs, or adopts what a previous agent left pinned, so that the sensor
 * and its kill and deny-connect maps keep working across agent restarts.
 * Map layouts: security-abi.ts.
 *
 * Layout under pinDir (the agent's <bpf-dir>/security):
 *   maps/<map name>   pinned by libbpf (LIBBPF_PIN_BY_NAME), re-used on every load
 *   progs/<program>   sec_exec, sec_exit (tp_btf), sec_openat, sec_openat2,
 *                     sec_setuid_enter, sec_setuid_exit (tracepoints),
 *                     sec_connect4, sec_connect6, sec_sendmsg4, sec_sendmsg6 (cgroup sock_addr),
 *                     sec_sock_create (cgroup sock: deny-connect's raw and SCTP sockets)
 *   links/<link>      one per attachment: exec, exit (raw tracepoint links);
 *                     openat, openat2, setuid-enter-*, setuid-exit-* (perf event
 *                     links on the syscalls/ tracepoints, which need tracefs:
 *                     mounted here when absent); connect4, connect6, sendmsg4,
 *                     sendmsg6, sock-create (the root of the cgroup v2 hierarchy). Unpinning
 *                     a link detaches it.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import sea from 'node:sea';
import koffi from 'koffi';
import type { BpfMap } from './bpf-map.ts';
import { BpfError, closeFd, linkCreate } from './libbpf.ts';
import { allPinned, closeMaps, linksDirOf, loadAndPin, openPinnedMaps, pinDirs, pinnedLinks, syncLinks, unpinLinks, type LinkSpec, type LinkTarget, type MapSpec } from './pinned-object.ts';
import { CONNECT_RULE, KILL_KEY, KILL_VALUE, SECURITY_CONFIG, SEC_BUDGET, SEC_BUDGET_KEY, SEC_STAT_VALUE_SIZE, SEC_U32_KEY_SIZE } from './security-abi.ts';
import { errorMessage } from '../lib/errors.ts';

const OBJECT_NAME = 'sluice_security';
/** The ring buffer's pin under maps/: opened by the sensor with its own reader. */
export const SECURITY_EVENTS_MAP = 'security_events';

/** Name of the object among the single executable's assets, and the override of its path from a checkout. */
export const SECURITY_OBJECT_ASSET = 'sluice-security.bpf.o';
export const SECURITY_OBJECT_ENV = 'SLUICE_SECURITY_OBJECT';

/** enum bpf_attach_type values (uapi/linux/bpf.h). */
const BPF_CGROUP_INET_SOCK_CREATE = 2;
const BPF_CGROUP_INET4_CONNECT = 10;
const BPF_CGROUP_INET6_CONNECT = 11;
const BPF_CGROUP_UDP4_SENDMSG = 14;
const BPF_CGROUP_UDP6_SENDMSG = 15;
const BPF_PERF_EVENT = 41;

/** Where tracefs is mounted (and mounted when absent), for the syscall tracepoints' ids. */
export const TRACEFS = '/sys/kernel/tracing';

const PROGRAMS = ['sec_exec', 'sec_exit', 'sec_openat', 'sec_openat2', 'sec_setuid_enter', 'sec_setuid_exit', 'sec_connect4', 'sec_connect6', 'sec_sendmsg4', 'sec_sendmsg6', 'sec_sock_create'] as const;
type ProgramName = (typeof PROGRAMS)[number];

/** A classic tracepoint, attached through a perf event (this loader's own kind of link). */
type Tracepoint = { at: 'tracepoint'; tracepoint: string };
type SecurityLink = LinkSpec<LinkTarget | Tracepoint, ProgramName>;

const SETUID_SYSCALLS = ['setuid', 'setreuid', 'setresuid'];

/** Every attachment, in the order they are made. */
export const SECURITY_LINKS: readonly SecurityLink[] = [
  { name: 'exec', program: 'sec_exec', at: 'raw_tp' },
  { name: 'exit', program: 'sec_exit', at: 'raw_tp' },
  { name: 'openat', program: 'sec_openat', at: 'tracepoint', tracepoint: 'syscalls/sys_enter_openat' },
  { name: 'openat2', program: 'sec_openat2', at: 'tracepoint', tracepoint: 'syscalls/sys_enter_openat2' },
  ...SETUID_SYSCALLS.map((s): SecurityLink => ({ name: `setuid-enter-${s}`, program: 'sec_setuid_enter', at: 'tracepoint', tracepoint: `syscalls/sys_enter_${s}` })),
  ...SETUID_SYSCALLS.map((s): SecurityLink => ({ name: `setuid-exit-${s}`, program: 'sec_setuid_exit', at: 'tracepoint', tracepoint: `syscalls/sys_exit_${s}` })),
  { name: 'connect4', program: 'sec_connect4', at: 'cgroup', attachType: BPF_CGROUP_INET4_CONNECT },
  { name: 'connect6', program: 'sec_connect6', at: 'cgroup', attachType: BPF_CGROUP_INET6_CONNECT },
  { name: 'sendmsg4', program: 'sec_sendmsg4', at: 'cgroup', attachType: BPF_CGROUP_UDP4_SENDMSG },
  { name: 'sendmsg6', program: 'sec_sendmsg6', at: 'cgroup', attachType: BPF_CGROUP_UDP6_SENDMSG },
  { name: 'sock-create', program: 'sec_sock_create', at: 'cgroup', attachType: BPF_CGROUP_INET_SOCK_CREATE },
];

const MAP_SPECS = {
  security_stats: { keySize: SEC_U32_KEY_SIZE, valueSize: SEC_STAT_VALUE_SIZE, perCpu: true },
  security_config: { keySize: SEC_U32_KEY_SIZE, valueSize: SECURITY_CONFIG.size, perCpu: false },
  security_kill: { keySize: KILL_KEY.size, valueSize: KILL_VALUE.size, perCpu: false },
  security_connect: { keySize: SEC_U32_KEY_SIZE, valueSize: CONNECT_RULE.size, perCpu: false },
  security_budget: { keySize: SEC_BUDGET_KEY.size, valueSize: SEC_BUDGET.size, perCpu: false },
} satisfies Record<string, MapSpec>;

/** The security object's maps the agent reads and writes, open in this process. */
export type SecurityMaps = Record<keyof typeof MAP_SPECS, BpfMap>;

/** A loaded (or adopted) security object. */
export interface Security {
  /** True if the pinned programs and maps of a previous load were re-used as they were. */
  adopted: boolean;
  maps: SecurityMaps;
  /** The pinned ring buffer security_events (open it with objGet; see SecuritySensor). */
  eventsPath: string;
  /** Links attached now, and links removed (a reload replaces them; attach: false removes them all). */
  attached: string[];
  removed: string[];
  /** The links pinned when loaded. */
  links: string[];
  /** Links that could not be attached, with why (no cgroup v2: no connect events and no deny-connect). */
  missing: { name: string; reason: string }[];
  /** Closes this process's map fds; everything pinned stays in the kernel. */
  close(): void;
}

/** Options for loadSecurity. */
export interface LoadSecurityOptions {
  /** A directory on bpffs, e.g. /sys/fs/bpf/sluice/security. */
  pinDir: string;
  /** The compiled object (see securityObjectBytes()). */
  objectBytes: Buffer;
  /** The root of the cgroup v2 hierarchy (trace-loader's cgroup2Root()); null: no connect hooks. */
  cgroupRoot: string | null;
  /** False: load and pin, but attach nothing and remove the pinned links (the programs stop running). */
  attach: boolean;
  /** Where tracefs is or is to be mounted (default TRACEFS). */
  tracefs?: string;
}

/** The bytes of the security object: an asset of the single executable, else dist/ (or $SLUICE_SECURITY_OBJECT). */
export function securityObjectBytes(): Buffer {
  if (sea.isSea()) return Buffer.from(sea.getAsset(SECURITY_OBJECT_ASSET));
  return readFileSync(process.env[SECURITY_OBJECT_ENV] || join(import.meta.dirname, '..', 'dist', SECURITY_OBJECT_ASSET));
}

/**
 * Adopts the pinned security object under pinDir if it is complete, else
 * loads objectBytes (re-using any maps already pinned) and pins its
 * programs; then makes the pinned links the ones wanted. Throws BpfError on
 * a kernel or libbpf failure, or when a tracepoint cannot be attached (the
 * sensor would be blind to opens or setuid calls): the caller reports it.
 */
export function loadSecurity(options: LoadSecurityOptions): Security {
  const dirs = pinDirs(options.pinDir);
  const adopted = allPinned(dirs, PROGRAMS, [...Object.keys(MAP_SPECS), SECURITY_EVENTS_MAP]);
  if (!adopted) {
    for (const name of RETIRED_MAPS) if (existsSync(join(dirs.mapsDir, name))) unlinkSync(join(dirs.mapsDir, name));
    loadAndPin({ objectBytes: options.objectBytes, objectName: OBJECT_NAME, mapsDir: dirs.mapsDir, programs: PROGRAMS, progPath: dirs.progPath });
  }

  const tracefs = options.tracefs ?? TRACEFS;
  const { attached, removed, missing } = syncLinks({
    dirs,
    links: SECURITY_LINKS,
    cgroupRoot: options.cgroupRoot,
    attach: options.attach,
    reload: !adopted,
    beforeAttach: (links) => {
      if (links.some((l) => l.at === 'tracepoint')) ensureTracefs(tracefs);
    },
    // Without cgroup v2 connects are neither seen nor refused; the process and file events still are.
    optional: (link) => link.at === 'cgroup',
    attachOther: (progFd, link) => attachTracepoint(progFd, link as SecurityLink & Tracepoint, tracefs),
  });
  const maps = openPinnedMaps(dirs.mapsDir, MAP_SPECS);
  return {
    adopted,
    maps,
    eventsPath: join(dirs.mapsDir, SECURITY_EVENTS_MAP),
    attached,
    removed,
    links: pinnedLinks(dirs.linksDir),
    missing,
    close: () => closeMaps(maps),
  };
}

/** Detaches every program (unpins the links) and, with everything, removes the pinned programs and maps too. */
export function removeSecurity(pinDir: string, everything = false): void {
  const linksDir = linksDirOf(pinDir);
  if (existsSync(linksDir)) unpinLinks(linksDir);
  if (everything) rmSync(pinDir, { recursive: true, force: true });
}

/** Pinned maps an older object had and this one has not (the per-CPU budgets before the per-namespace ones). */
const RETIRED_MAPS = ['security_rate'];

function attachTracepoint(progFd: number, link: SecurityLink & Tracepoint, tracefs: string): number {
  // The link holds the perf event; the event's own fd is not needed once the link exists.
  const perfFd = perfEventOpenTracepoint(tracepointId(tracefs, link.tracepoint), link.tracepoint);
  try {
    return linkCreate(progFd, perfFd, BPF_PERF_EVENT, `attach ${link.program} to tracepoint ${link.tracepoint}`);
  } finally {
    closeFd(perfFd);
  }
}

// ---- tracefs and perf events: the classic tracepoints' attachment -------------------------

const TRACEFS_MAGIC = 0x74726163n;
const STATFS_SIZE_BYTES = 128;
const SYS_PERF_EVENT_OPEN_X86_64 = 298;
const PERF_TYPE_TRACEPOINT = 2;
/** sizeof(struct perf_event_attr), PERF_ATTR_SIZE_VER8. */
const PERF_ATTR_SIZE = 136;
const PERF_FLAG_FD_CLOEXEC = 8;

type Fn = (...args: unknown[]) => unknown;
let libc: { syscall: Fn; statfs: Fn; mount: Fn } | undefined;

function c(): { syscall: Fn; statfs: Fn; mount: Fn } {
  if (libc) return libc;
  const lib = koffi.load('libc.so.6');
  libc = {
    syscall: lib.func('long syscall(long number, ...)'),
    statfs: lib.func('int statfs(const char *path, void *buf)'),
    mount: lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)'),
  };
  return libc;
}

/** Mounts tracefs at dir unless it is there (classic tracepoints are found through it; without it, ENOENT). */
export function ensureTracefs(dir = TRACEFS): void {
  const buf = Buffer.alloc(STATFS_SIZE_BYTES);
  if (c().statfs(dir, buf) === 0 && BigInt.asUintN(32, buf.readBigInt64LE(0)) === TRACEFS_MAGIC) return;
  mkdirSync(dir, { recursive: true });
  if (c().mount('tracefs', dir, 'tracefs', 0, null) !== 0) throw new BpfError(`mount tracefs at ${dir}`, koffi.errno());
}

function tracepointId(tracefs: string, tracepoint: string): number {
  const path = join(tracefs, 'events', tracepoint, 'id');
  try {
    return Number(readFileSync(path, 'utf8').trim());
  } catch (err: unknown) {
    throw new Error(`tracepoint ${tracepoint}: cannot read its id at ${path}: ${errorMessage(err)}`);
  }
}

/** perf_event_open(2) of a tracepoint on every CPU (pid -1, cpu 0: a BPF program runs wherever it fires). */
function perfEventOpenTracepoint(id: number, what: string): number {
  if (process.arch !== 'x64') throw new Error(`perf_event_open: the syscall number of ${process.arch} is not known here`);
  const attr = Buffer.alloc(PERF_ATTR_SIZE);
  attr.writeUInt32LE(PERF_TYPE_TRACEPOINT, 0);
  attr.writeUInt32LE(PERF_ATTR_SIZE, 4);
  attr.writeBigUInt64LE(BigInt(id), 8);
  attr.writeBigUInt64LE(1n, 16); // sample_period
  attr.writeUInt32LE(1, 48); // wakeup_events
  const fd = Number(c().syscall(SYS_PERF_EVENT_OPEN_X86_64, 'void *', attr, 'int', -1, 'int', 0, 'int', -1, 'unsigned long', PERF_FLAG_FD_CLOEXEC));
  if (fd < 0) throw new BpfError(`perf_event_open tracepoint ${what}`, koffi.errno());
  return fd;
}

/**
 * Loads the tracing object (bpf/trace.c: TCP health per network namespace)
 * and attaches its programs, or adopts what a previous agent left pinned, so
 * that counting goes on across agent restarts. Map layouts: trace-abi.ts.
 *
 * Layout under pinDir (the agent's <bpf-dir>/trace):
 *   maps/<map name>   pinned by libbpf (LIBBPF_PIN_BY_NAME), re-used on every load
 *   progs/<program>   tcp_retransmit, tcp_state (tp_btf), tcp_rtt_sockops (sockops)
 *   links/<link>      tcp-retransmit, tcp-state: raw tracepoint links (system-wide);
 *                     tcp-rtt: the sockops program on the root of the cgroup v2
 *                     hierarchy, which every socket of the node descends from.
 *                     Unpinning a link detaches its program.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NETNS_KEY_SIZE, TCP_COUNTERS, TCP_RTT_HIST, TRACE_STAT_KEY_SIZE, TRACE_STAT_VALUE_SIZE } from './trace-abi.ts';
import type { BpfMap } from './bpf-map.ts';
import { allPinned, closeMaps, loadAndPin, openPinnedMaps, pinDirs, pinnedLinks, syncLinks, type LinkSpec, type LinkTarget, type MapSpec } from './pinned-object.ts';

const OBJECT_NAME = 'sluice_trace';

/** enum bpf_attach_type values (uapi/linux/bpf.h). */
const BPF_CGROUP_SOCK_OPS = 3;

/** The programs, by the name libbpf and the pins know them. */
const PROGRAMS = ['tcp_retransmit', 'tcp_state', 'tcp_rtt_sockops'] as const;
type ProgramName = (typeof PROGRAMS)[number];

/** The links: the program each runs and where it attaches (tp_btf programs: their raw tracepoint). */
const LINKS: LinkSpec<LinkTarget, ProgramName>[] = [
  { name: 'tcp-retransmit', program: 'tcp_retransmit', at: 'raw_tp' },
  { name: 'tcp-state', program: 'tcp_state', at: 'raw_tp' },
  { name: 'tcp-rtt', program: 'tcp_rtt_sockops', at: 'cgroup', attachType: BPF_CGROUP_SOCK_OPS },
];

const MAP_SPECS = {
  tcp_counters: { keySize: NETNS_KEY_SIZE, valueSize: TCP_COUNTERS.size, perCpu: true },
  tcp_rtt: { keySize: NETNS_KEY_SIZE, valueSize: TCP_RTT_HIST.size, perCpu: true },
  trace_stats: { keySize: TRACE_STAT_KEY_SIZE, valueSize: TRACE_STAT_VALUE_SIZE, perCpu: true },
} satisfies Record<string, MapSpec>;

/** The tracing object's maps, open in this process; every one is per CPU. */
export type TraceMaps = Record<keyof typeof MAP_SPECS, BpfMap>;

/** A loaded (or adopted) tracing object. */
export interface Trace {
  /** True if the pinned programs and maps of a previous load were re-used as they were. */
  adopted: boolean;
  maps: TraceMaps;
  /** Links attached now, and links removed (a reload replaces them; disabled removes them all). */
  attached: string[];
  removed: string[];
  /** The links pinned (attached) when loaded. */
  links: string[];
  /** The links pinned now (something else, e.g. bench/, may attach or detach them). */
  linksNow(): string[];
  /** Links that could not be attached, with why (e.g. no cgroup v2 mount: no RTT). */
  missing: { name: string; reason: string }[];
  /** Closes this process's map fds; everything pinned stays in the kernel. */
  close(): void;
}

/** Options for loadTrace. */
export interface LoadTraceOptions {
  /** A directory on bpffs, e.g. /sys/fs/bpf/sluice/trace. */
  pinDir: string;
  /** The compiled tracing object (see traceObjectBytes()). */
  objectBytes: Buffer;
  /** The root of the cgroup v2 hierarchy (see cgroup2Root()); null: the RTT program is not attached. */
  cgroupRoot: string | null;
  /** False: load and pin, but attach nothing and remove the pinned links (the programs stop running). */
  attach: boolean;
}

/**
 * Adopts the pinned tracing object under pinDir if it is complete, else
 * loads objectBytes (re-using any maps already pinned) and pins its
 * programs; then makes the pinned links the ones wanted. Throws BpfError on
 * a kernel or libbpf failure (e.g. a kernel without BTF).
 */
export function loadTrace(options: LoadTraceOptions): Trace {
  const dirs = pinDirs(options.pinDir);
  const adopted = allPinned(dirs, PROGRAMS, Object.keys(MAP_SPECS));
  if (!adopted) loadAndPin({ objectBytes: options.objectBytes, objectName: OBJECT_NAME, mapsDir: dirs.mapsDir, programs: PROGRAMS, progPath: dirs.progPath });

  const { attached, removed, missing } = syncLinks({
    dirs,
    links: LINKS,
    cgroupRoot: options.cgroupRoot,
    attach: options.attach,
    reload: !adopted,
    // A cgroup root that is no cgroup v2 directory costs the RTT histogram, not the other counts.
    optional: (link) => link.at === 'cgroup',
  });
  const maps = openPinnedMaps(dirs.mapsDir, MAP_SPECS);
  return {
    adopted,
    maps,
    attached,
    removed,
    links: pinnedLinks(dirs.linksDir),
    linksNow: () => pinnedLinks(dirs.linksDir),
    missing,
    close: () => closeMaps(maps),
  };
}

/** The mount point of the cgroup v2 hierarchy's root (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host); null if none. */
export function cgroup2Root(mountinfo = '/proc/self/mountinfo'): string | null {
  for (const line of readFileSync(mountinfo, 'utf8').split('\n')) {
    // <id> <parent> <major:minor> <root> <mount point> <options> [optional fields] - <fstype> <source> <super options>
    const [before, after] = line.split(' - ');
    if (!before || !after || after.split(' ')[0] !== 'cgroup2') continue;
    const fields = before.split(' ');
    if (fields[3] === '/' && fields[4]) return unescapeMountPath(fields[4]);
  }
  return null;
}

/**
 * The cgroup v2 root at or under dir, for --cgroup-root: dir itself when it is
 * one, else its `unified` (a hybrid host's /sys/fs/cgroup holds the v1
 * controllers, with the v2 hierarchy at unified/); else dir, which the
 * attach will then refuse. A cgroup v2 directory has cgroup.controllers.
 */
export function cgroup2RootUnder(dir: string): string {
  if (existsSync(join(dir, 'cgroup.controllers'))) return dir;
  if (existsSync(join(dir, 'unified', 'cgroup.controllers'))) return join(dir, 'unified');
  return dir;
}

function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

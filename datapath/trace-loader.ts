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
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { NETNS_KEY_SIZE, TCP_COUNTERS, TCP_RTT_HIST, TRACE_STAT_KEY_SIZE, TRACE_STAT_VALUE_SIZE } from './trace-abi.ts';
import { BpfMap } from './bpf-map.ts';
import { errorMessage } from '../lib/errors.ts';
import { closeFd, closeObject, findProgram, linkCreate, loadObject, objGet, objPin, openObjectFromMemory, pinProgram } from './libbpf.ts';

const OBJECT_NAME = 'sluice_trace';
const MAPS_DIR = 'maps';
const PROGS_DIR = 'progs';
const LINKS_DIR = 'links';

/** enum bpf_attach_type values (uapi/linux/bpf.h). */
const BPF_CGROUP_SOCK_OPS = 3;
const BPF_TRACE_RAW_TP = 23;

/** The programs, by the name libbpf and the pins know them. */
const PROGRAMS = ['tcp_retransmit', 'tcp_state', 'tcp_rtt_sockops'] as const;
type ProgramName = (typeof PROGRAMS)[number];

/** The links: the program each runs and where it attaches. */
const LINKS: { name: string; program: ProgramName; at: 'tracepoint' | 'cgroup' }[] = [
  { name: 'tcp-retransmit', program: 'tcp_retransmit', at: 'tracepoint' },
  { name: 'tcp-state', program: 'tcp_state', at: 'tracepoint' },
  { name: 'tcp-rtt', program: 'tcp_rtt_sockops', at: 'cgroup' },
];

interface MapSpec {
  keySize: number;
  valueSize: number;
}

const MAP_SPECS = {
  tcp_counters: { keySize: NETNS_KEY_SIZE, valueSize: TCP_COUNTERS.size },
  tcp_rtt: { keySize: NETNS_KEY_SIZE, valueSize: TCP_RTT_HIST.size },
  trace_stats: { keySize: TRACE_STAT_KEY_SIZE, valueSize: TRACE_STAT_VALUE_SIZE },
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
  const mapsDir = join(options.pinDir, MAPS_DIR);
  const progsDir = join(options.pinDir, PROGS_DIR);
  const linksDir = join(options.pinDir, LINKS_DIR);
  for (const dir of [mapsDir, progsDir, linksDir]) mkdirSync(dir, { recursive: true });

  const progPath = (name: ProgramName) => join(progsDir, name);
  const pinned = [...PROGRAMS.map(progPath), ...Object.keys(MAP_SPECS).map((name) => join(mapsDir, name))];
  const adopted = pinned.every((path) => existsSync(path));
  if (!adopted) loadAndPin(options.objectBytes, mapsDir, progPath);

  const { attached, removed, missing } = syncLinks(linksDir, progPath, options, !adopted);
  const maps = openMaps(mapsDir);
  return {
    adopted,
    maps,
    attached,
    removed,
    links: readdirSync(linksDir).sort(),
    linksNow: () => (existsSync(linksDir) ? readdirSync(linksDir).sort() : []),
    missing,
    close: () => {
      for (const map of Object.values(maps)) map.close();
    },
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

function loadAndPin(objectBytes: Buffer, mapsDir: string, progPath: (name: ProgramName) => string): void {
  const obj = openObjectFromMemory(objectBytes, { objectName: OBJECT_NAME, pinRootPath: mapsDir });
  try {
    loadObject(obj, OBJECT_NAME);
    for (const name of PROGRAMS) {
      // A leftover pin (a half-finished earlier load) is replaced; syncLinks then replaces its links.
      if (existsSync(progPath(name))) unlinkSync(progPath(name));
      pinProgram(findProgram(obj, name), name, progPath(name));
    }
  } finally {
    // Pins keep programs and maps alive; the object's own fds are not needed.
    closeObject(obj);
  }
}

/**
 * Makes the pinned links the wanted ones: all of them when attaching (those
 * of older programs replaced on reload), none when not. A link is
 * unpinned (detached) before its replacement is attached: for that moment
 * the program's events are not counted, never counted twice.
 */
function syncLinks(linksDir: string, progPath: (name: ProgramName) => string, options: LoadTraceOptions, reload: boolean) {
  const wanted = new Set(options.attach ? LINKS.map((l) => l.name) : []);
  const removed: string[] = [];
  for (const pin of readdirSync(linksDir)) {
    if (wanted.has(pin) && !reload) continue;
    unlinkSync(join(linksDir, pin));
    removed.push(pin);
  }
  const attached: string[] = [];
  const missing: { name: string; reason: string }[] = [];
  if (!options.attach) return { attached, removed, missing };
  for (const link of LINKS) {
    const pin = join(linksDir, link.name);
    if (existsSync(pin)) continue;
    if (link.at === 'cgroup' && options.cgroupRoot === null) {
      missing.push({ name: link.name, reason: 'no cgroup v2 hierarchy is mounted' });
      continue;
    }
    try {
      attachAndPin(progPath(link.program), link, options.cgroupRoot, pin);
    } catch (err: unknown) {
      // A cgroup root that is no cgroup v2 directory costs the RTT histogram, not the other counts.
      if (link.at !== 'cgroup') throw err;
      missing.push({ name: link.name, reason: errorMessage(err) });
      continue;
    }
    attached.push(link.name);
  }
  return { attached, removed, missing };
}

function attachAndPin(progPinPath: string, link: (typeof LINKS)[number], cgroupRoot: string | null, pin: string): void {
  const progFd = objGet(progPinPath, `program ${link.program}`);
  try {
    let linkFd: number;
    if (link.at === 'cgroup') {
      const cgroupFd = openSync(cgroupRoot!, 'r');
      try {
        linkFd = linkCreate(progFd, cgroupFd, BPF_CGROUP_SOCK_OPS, `attach ${link.program} to cgroup ${cgroupRoot}`);
      } finally {
        closeSync(cgroupFd);
      }
    } else {
      linkFd = linkCreate(progFd, 0, BPF_TRACE_RAW_TP, `attach ${link.program} to its tracepoint`);
    }
    try {
      objPin(linkFd, pin, `link ${link.name}`);
    } finally {
      closeFd(linkFd);
    }
  } finally {
    closeFd(progFd);
  }
}

function openMaps(mapsDir: string): TraceMaps {
  const opened: BpfMap[] = [];
  try {
    const entries = Object.entries(MAP_SPECS).map(([name, spec]) => {
      const map = BpfMap.openPinned(join(mapsDir, name), name, spec.keySize, spec.valueSize, true);
      opened.push(map);
      return [name, map] as const;
    });
    return Object.fromEntries(entries) as TraceMaps;
  } catch (err: unknown) {
    for (const map of opened) map.close();
    throw err;
  }
}

/**
 * What the loaders of Sluice's side objects (trace-loader.ts,
 * security-loader.ts, service-lb-loader.ts) share: one pin directory per
 * object, laid out as
 *   maps/<map name>   pinned by libbpf (LIBBPF_PIN_BY_NAME), re-used on every load
 *   progs/<program>   the object's programs, pinned by the loader
 *   links/<link>      one pinned BPF link per attachment; unpinning it detaches it
 * and the steps over it: adopt the pins a previous agent left when they are
 * complete, else load the object (libbpf re-uses the maps already pinned) and
 * pin its programs; make the pinned links the wanted ones; open the maps.
 * Each loader keeps what is its own: which programs and maps, where each link
 * attaches, and what it does around these steps (resizes, retired maps).
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap } from './bpf-map.ts';
import { closeFd, closeObject, findProgram, linkCreate, loadObject, objGet, objPin, openObjectFromMemory, pinProgram, type BpfObjectHandle } from './libbpf.ts';
import { errorMessage } from '../lib/errors.ts';

const MAPS_DIR = 'maps';
const PROGS_DIR = 'progs';
const LINKS_DIR = 'links';

/** enum bpf_attach_type (uapi/linux/bpf.h): a raw tracepoint link (tp_btf programs). */
const BPF_TRACE_RAW_TP = 23;

/** The directories under an object's pin directory. */
export interface PinDirs {
  mapsDir: string;
  progsDir: string;
  linksDir: string;
  /** Where a program is pinned. */
  progPath(program: string): string;
}

/** The directories under pinDir, made where absent. */
export function pinDirs(pinDir: string): PinDirs {
  const mapsDir = join(pinDir, MAPS_DIR);
  const progsDir = join(pinDir, PROGS_DIR);
  const linksDir = linksDirOf(pinDir);
  for (const dir of [mapsDir, progsDir, linksDir]) mkdirSync(dir, { recursive: true });
  return { mapsDir, progsDir, linksDir, progPath: (program) => join(progsDir, program) };
}

/** The links directory under pinDir (which may not exist). */
export function linksDirOf(pinDir: string): string {
  return join(pinDir, LINKS_DIR);
}

/** True when every program and map named is pinned: a previous load is complete and can be adopted as it is. */
export function allPinned(dirs: PinDirs, programs: readonly string[], maps: readonly string[]): boolean {
  return [...programs.map(dirs.progPath), ...maps.map((name) => join(dirs.mapsDir, name))].every((path) => existsSync(path));
}

/** Options for loadAndPin. */
export interface LoadAndPinOptions {
  objectBytes: Buffer;
  /** The object's name (libbpf names its internal maps after it). */
  objectName: string;
  /** Where the maps are pinned, and those already there re-used. */
  mapsDir: string;
  programs: readonly string[];
  /** Where each program is pinned. */
  progPath: (program: string) => string;
  /** Called on the opened object before it is loaded (e.g. to set map sizes). */
  beforeLoad?: (obj: BpfObjectHandle) => void;
}

/**
 * Loads the object against the maps pinned under mapsDir (libbpf creates and
 * pins those absent) and pins its programs. A leftover program pin (a
 * half-finished earlier load) is replaced; links made before keep the
 * program they were made with, which shares the maps.
 */
export function loadAndPin(options: LoadAndPinOptions): void {
  const obj = openObjectFromMemory(options.objectBytes, { objectName: options.objectName, pinRootPath: options.mapsDir });
  try {
    options.beforeLoad?.(obj);
    loadObject(obj, options.objectName);
    for (const name of options.programs) {
      const path = options.progPath(name);
      if (existsSync(path)) unlinkSync(path);
      pinProgram(findProgram(obj, name), name, path);
    }
  } finally {
    // Pins keep programs and maps alive; the object's own fds are not needed.
    closeObject(obj);
  }
}

/** A pinned map's layout, as the loader opens it. */
export interface MapSpec {
  keySize: number;
  valueSize: number;
  perCpu: boolean;
}

/** Opens each map pinned under mapsDir as specs has it; on a failure, closes those opened and throws. */
export function openPinnedMaps<K extends string>(mapsDir: string, specs: Record<K, MapSpec>): Record<K, BpfMap> {
  const opened: BpfMap[] = [];
  try {
    const entries = (Object.entries(specs) as [K, MapSpec][]).map(([name, spec]) => {
      const map = BpfMap.openPinned(join(mapsDir, name), name, spec.keySize, spec.valueSize, spec.perCpu);
      opened.push(map);
      return [name, map] as const;
    });
    return Object.fromEntries(entries) as Record<K, BpfMap>;
  } catch (err: unknown) {
    for (const map of opened) map.close();
    throw err;
  }
}

/** Closes this process's fds of maps; everything pinned stays in the kernel. */
export function closeMaps(maps: Record<string, BpfMap>): void {
  for (const map of Object.values(maps)) map.close();
}

/** The links pinned under linksDir now, sorted ([] when the directory is gone). */
export function pinnedLinks(linksDir: string): string[] {
  return existsSync(linksDir) ? readdirSync(linksDir).sort() : [];
}

/** Unpins (so detaches) the links under linksDir that `remove` picks (default: all); returns their names. */
export function unpinLinks(linksDir: string, remove: (pin: string) => boolean = () => true): string[] {
  const removed: string[] = [];
  for (const pin of readdirSync(linksDir)) {
    if (!remove(pin)) continue;
    unlinkSync(join(linksDir, pin));
    removed.push(pin);
  }
  return removed;
}

/** Where a link attaches: a raw tracepoint (the program's own), or the cgroup v2 root with an attach type. Loaders add their own kinds (attachOther). */
export type LinkTarget = { at: 'raw_tp' } | { at: 'cgroup'; attachType: number };

/** One attachment: its pin's name under links/, and the program it runs. */
export type LinkSpec<Target extends { at: string } = LinkTarget, Program extends string = string> = { name: string; program: Program } & Target;

/** A link that could not be attached, and why. */
export interface MissingLink {
  name: string;
  reason: string;
}

/** Options for attachLinks and syncLinks. */
export interface AttachLinksOptions<L extends LinkSpec<{ at: string }>> {
  dirs: PinDirs;
  /** Every link, in the order they are made. */
  links: readonly L[];
  /** The root of the cgroup v2 hierarchy; null: the cgroup links are missing. */
  cgroupRoot: string | null;
  /** Links whose failure to attach costs only what they feed: reported missing, not thrown. Default: none. */
  optional?: (link: L) => boolean;
  /** Makes the link fd of a link of a kind other than LinkTarget's. */
  attachOther?: (progFd: number, link: L) => number;
}

/**
 * Attaches and pins every link not pinned yet, in order; returns the names
 * attached and the links missing (cgroup links without a cgroup root, and
 * optional links that failed). Throws on any other failure.
 */
export function attachLinks<L extends LinkSpec<{ at: string }>>(options: AttachLinksOptions<L>): { attached: string[]; missing: MissingLink[] } {
  const attached: string[] = [];
  const missing: MissingLink[] = [];
  for (const link of options.links) {
    const pin = join(options.dirs.linksDir, link.name);
    if (existsSync(pin)) continue;
    if (link.at === 'cgroup' && options.cgroupRoot === null) {
      missing.push({ name: link.name, reason: 'no cgroup v2 hierarchy is mounted' });
      continue;
    }
    try {
      attachAndPin(options, link, pin);
    } catch (err: unknown) {
      if (!options.optional?.(link)) throw err;
      missing.push({ name: link.name, reason: errorMessage(err) });
      continue;
    }
    attached.push(link.name);
  }
  return { attached, missing };
}

/** Options for syncLinks. */
export interface SyncLinksOptions<L extends LinkSpec<{ at: string }>> extends AttachLinksOptions<L> {
  /** False: every pinned link is removed and none attached (the programs stop running). */
  attach: boolean;
  /** True when the programs were just pinned anew: the links of the older ones are replaced. */
  reload: boolean;
  /** Called before attaching with the links about to be attached (e.g. to mount what they need). */
  beforeAttach?: (links: L[]) => void;
}

/**
 * Makes the pinned links the wanted ones: all of them when attaching (those
 * of older programs replaced on reload), none when not; pins that are none
 * of the links are removed. A link is unpinned (detached) before its
 * replacement is attached: for that moment its program's events are not
 * seen, never seen twice.
 */
export function syncLinks<L extends LinkSpec<{ at: string }>>(options: SyncLinksOptions<L>): { attached: string[]; removed: string[]; missing: MissingLink[] } {
  const wanted = new Set(options.attach ? options.links.map((l) => l.name) : []);
  const removed = unpinLinks(options.dirs.linksDir, (pin) => options.reload || !wanted.has(pin));
  if (!options.attach) return { attached: [], removed, missing: [] };
  options.beforeAttach?.(options.links.filter((l) => !existsSync(join(options.dirs.linksDir, l.name))));
  return { ...attachLinks(options), removed };
}

function attachAndPin<L extends LinkSpec<{ at: string }>>(options: AttachLinksOptions<L>, link: L, pin: string): void {
  const progFd = objGet(options.dirs.progPath(link.program), `program ${link.program}`);
  try {
    const linkFd = makeLink(options, progFd, link);
    try {
      objPin(linkFd, pin, `link ${link.name}`);
    } finally {
      closeFd(linkFd);
    }
  } finally {
    closeFd(progFd);
  }
}

function makeLink<L extends LinkSpec<{ at: string }>>(options: AttachLinksOptions<L>, progFd: number, link: L): number {
  // Read as one of LinkTarget's kinds only once `at` says it is; any other kind goes to attachOther.
  const target = link as LinkSpec<{ at: string }> as LinkSpec;
  if (target.at === 'raw_tp') return linkCreate(progFd, 0, BPF_TRACE_RAW_TP, `attach ${link.program} to its tracepoint`);
  if (target.at === 'cgroup') {
    const cgroupRoot = options.cgroupRoot!; // attachLinks reports a cgroup link missing without one
    const cgroupFd = openSync(cgroupRoot, 'r');
    try {
      return linkCreate(progFd, cgroupFd, target.attachType, `attach ${link.program} to cgroup ${cgroupRoot}`);
    } finally {
      closeSync(cgroupFd);
    }
  }
  if (!options.attachOther) throw new Error(`link ${link.name}: no way to attach a link at '${link.at}'`);
  return options.attachOther(progFd, link);
}

/**
 * Resizing the socket load balancer's pinned maps to the sizes the agent is
 * started with (--lb-*-max): the maps a previous agent pinned keep their
 * max_entries, which the kernel cannot change, so new maps are made at the
 * new sizes, filled from the old ones, and the programs switched to them.
 * Services keep being translated throughout, and live sockets keep their
 * reverse translation (lb_revnat is copied, then caught up).
 *
 * Under the load balancer's pin directory, beside maps/, progs/ and links/:
 *   resize-staging/{maps,progs}  being built: the object loaded at the new sizes
 *                                and every map's entries copied. A crash here: the
 *                                next agent removes it; nothing in use changed.
 *   resize-ready/                the staging directory renamed once complete (the
 *                                commit point: a rename is atomic). From here the
 *                                resize only goes forward, here or in the next agent:
 *     1. every cgroup link switched to its new program (BPF_LINK_UPDATE);
 *     2. entries the old programs made since the copy copied where missing;
 *     3. maps/ and progs/ each moved to resize-retired/ and replaced by the new one;
 *     4. resize-ready/ and resize-retired/ removed.
 * A smaller map that cannot hold the entries (a hash with more, an array with
 * a used index past the new end) refuses the resize: the pinned maps are kept
 * at their sizes and the refusal is reported.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readLinkInfo, readMapInfo, readProgramId } from './bpf-info.ts';
import { closeFd, linkUpdate, objGet } from './libbpf.ts';
import { copyEntries } from './map-migration.ts';

/**
 * A debug knob for the crash tests: with SLUICE_LB_RESIZE_CRASH_AFTER=<step>
 * the resize stops right after that step as a crash would, leaving every pin
 * as it is. Unset, it costs one environment lookup per step.
 */
export const RESIZE_CRASH_ENV = 'SLUICE_LB_RESIZE_CRASH_AFTER';
export const RESIZE_STEPS = ['staged', 'ready', 'links', 'maps'] as const;

/** Thrown by an injected crash; nothing is cleaned up behind it. */
export class InjectedResizeCrash extends Error {
  constructor(step: (typeof RESIZE_STEPS)[number]) {
    super(`injected crash after resize step '${step}' (${RESIZE_CRASH_ENV} is set)`);
    this.name = 'InjectedResizeCrash';
  }
}

function crashPoint(step: (typeof RESIZE_STEPS)[number]): void {
  if (process.env[RESIZE_CRASH_ENV] === step) throw new InjectedResizeCrash(step);
}

const STAGING_DIR = 'resize-staging';
const READY_DIR = 'resize-ready';
const RETIRED_DIR = 'resize-retired';
const MAPS_DIR = 'maps';
const PROGS_DIR = 'progs';
const LINKS_DIR = 'links';

/** What the loader tells the resize: its maps, its links and programs, and how to load at the new sizes. */
export interface ResizeTarget {
  pinDir: string;
  maps: string[];
  links: readonly { name: string; program: string }[];
  /** Loads the object at the new sizes, pinning its maps in mapsDir and its programs in progsDir. */
  loadInto: (mapsDir: string, progsDir: string) => void;
}

/**
 * Resizes the pinned maps as the file comment says. Returns null when done,
 * else why the pinned maps were kept (nothing in use changed then).
 */
export function resizePinnedMaps(target: ResizeTarget): string | null {
  const staging = join(target.pinDir, STAGING_DIR);
  rmSync(staging, { recursive: true, force: true });
  try {
    mkdirSync(join(staging, MAPS_DIR), { recursive: true });
    mkdirSync(join(staging, PROGS_DIR), { recursive: true });
    target.loadInto(join(staging, MAPS_DIR), join(staging, PROGS_DIR));
    for (const map of target.maps) copyMap(map, join(target.pinDir, MAPS_DIR), join(staging, MAPS_DIR), 'all');
    crashPoint('staged');
  } catch (err: unknown) {
    if (err instanceof InjectedResizeCrash) throw err;
    rmSync(staging, { recursive: true, force: true });
    return (err as Error).message;
  }
  renameSync(staging, join(target.pinDir, READY_DIR));
  crashPoint('ready');
  finishResize(target);
  return null;
}

/**
 * Puts right what an interrupted resize left, before anything looks at the
 * pins: a staging directory is removed, a ready resize finished.
 */
export function recoverResize(target: ResizeTarget): void {
  rmSync(join(target.pinDir, STAGING_DIR), { recursive: true, force: true });
  if (existsSync(join(target.pinDir, READY_DIR))) finishResize(target);
  rmSync(join(target.pinDir, RETIRED_DIR), { recursive: true, force: true });
}

/** Steps 1 to 4, from whatever state the directories are in: safe to run again after a crash. */
function finishResize(target: ResizeTarget): void {
  const { pinDir } = target;
  const ready = join(pinDir, READY_DIR);
  const retired = join(pinDir, RETIRED_DIR);
  // Where each set is now: still in resize-ready/, or already moved in place.
  const newer = (dir: string) => (existsSync(join(ready, dir)) ? join(ready, dir) : join(pinDir, dir));
  const older = (dir: string) => (existsSync(join(ready, dir)) ? join(pinDir, dir) : join(retired, dir));
  for (const link of target.links) {
    const pin = join(pinDir, LINKS_DIR, link.name);
    if (existsSync(pin)) switchLink(pin, join(newer(PROGS_DIR), link.program));
  }
  if (existsSync(older(MAPS_DIR))) for (const map of target.maps) if (existsSync(join(older(MAPS_DIR), map))) copyMap(map, older(MAPS_DIR), newer(MAPS_DIR), 'missing');
  crashPoint('links');
  for (const dir of [MAPS_DIR, PROGS_DIR]) {
    if (!existsSync(join(ready, dir))) continue;
    if (existsSync(join(pinDir, dir))) {
      mkdirSync(retired, { recursive: true });
      rmSync(join(retired, dir), { recursive: true, force: true });
      renameSync(join(pinDir, dir), join(retired, dir));
    }
    renameSync(join(ready, dir), join(pinDir, dir));
    if (dir === MAPS_DIR) crashPoint('maps');
  }
  rmSync(ready, { recursive: true, force: true });
  rmSync(retired, { recursive: true, force: true });
}

/** Points a pinned link at the pinned program (BPF_LINK_UPDATE), unless it runs it already. */
function switchLink(linkPin: string, progPin: string): void {
  const linkFd = objGet(linkPin, 'link');
  try {
    const progFd = objGet(progPin, 'program');
    try {
      if (readLinkInfo(linkFd, `link ${linkPin}`).progId !== readProgramId(progFd, `program ${progPin}`)) linkUpdate(linkFd, progFd, `switch link ${linkPin} to ${progPin}`);
    } finally {
      closeFd(progFd);
    }
  } finally {
    closeFd(linkFd);
  }
}

function copyMap(map: string, fromDir: string, toDir: string, mode: 'all' | 'missing'): number {
  const oldFd = objGet(join(fromDir, map), `map ${map}`);
  try {
    const newFd = objGet(join(toDir, map), `map ${map} (resized)`);
    try {
      const from = { ...readMapInfo(oldFd, `map ${map}`), value: null };
      const to = { ...readMapInfo(newFd, `map ${map} (resized)`), value: null };
      return copyEntries(map, oldFd, newFd, from, to, Math.min(from.valueSize, to.valueSize), mode);
    } finally {
      closeFd(newFd);
    }
  } finally {
    closeFd(oldFd);
  }
}

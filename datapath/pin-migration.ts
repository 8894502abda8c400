/**
 * Migrating a pinned datapath whose map layouts changed (issue 33, step 3):
 * new maps made and filled, the new programs loaded against them, every TCX
 * link switched, and the pins replaced, so that a crash at any point leaves
 * a set of pins that works and that the next agent finishes or discards.
 *
 * Under pinDir, beside maps/ and progs/:
 *   migration-staging/{maps,progs}
 *                         being built: maps whose layout is unchanged pinned
 *                         again (shared, not copied), changed ones created by
 *                         libbpf and filled from the old (map-migration.ts),
 *                         the new programs loaded against them. Nothing runs
 *                         them yet. A crash here: the next agent removes
 *                         it, the old set never stopped working.
 *   migration-ready/      the staging directory renamed once complete (the
 *                         commit point: a rename is atomic on bpffs). Its
 *                         sluice_version names the target version, as do
 *                         those in its maps/ and progs/. From here on the
 *                         migration only goes forward; the next agent, of
 *                         whichever version, finishes it:
 *     1. every TCX link switched to its programs (BPF_LINK_UPDATE, each
 *        veth's two links one after the other);
 *     2. what the old programs did to copied maps since their copy (flows
 *        opened and ended, counts) carried into the new maps (the catch-up,
 *        map-catch-up.ts: entries made, ended or changed, counts added);
 *     3. maps/ and migration-ready/maps exchanged (renameat2 RENAME_EXCHANGE,
 *        atomic), then progs/ and migration-ready/progs; each only if the
 *        directory in place does not carry the target version yet, so a
 *        crash between the two is finished, not repeated;
 *     4. migration-ready/ (now the old set) renamed migration-retired/ and
 *        removed.
 * While migration-ready/ exists the agent is not serving, so no CNI ADD
 * attaches the old programs meanwhile (it needs the agent's addresses first).
 *
 * The catch-up (step 2) compares with the entries as first copied, which
 * this process keeps in memory; a migration finished by the next agent after
 * a crash copies only the entries the new maps lack (map-catch-up.ts says
 * what that leaves). A veth's two links switch one right after the other,
 * not together: a reply in that gap is looked up in the old conntrack by
 * to_pod while from_pod already writes the new one. The netfilter programs
 * (service_egress) run the old programs on the old maps until the agent
 * replaces their links after the migration: what they do meanwhile is not
 * caught up.
 */
import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';
import { BPF_LINK_TYPE_TCX, readLinkInfo, readMapInfo, readProgramId } from './bpf-info.ts';
import { BPF_TCX_INGRESS, closeFd, closeObject, isBpfError, linkUpdate, mapDefinitions, objGet, objPin, openObjectFromMemory } from './libbpf.ts';
import { definedMapTypes, pinnedMapTypes } from './map-btf.ts';
import { MAP_TREATMENT, catchUpOf, copyEntries, isRefusal, planMigration, valueBytesOf, type MapLayout, type MigrationRefusal, type MigrationStep } from './map-migration.ts';
import { EntrySet } from './entry-set.ts';
import { catchUpMap, type CatchUpResult } from './map-catch-up.ts';
import { VERSION_MAP, pinVersion, readPinnedVersion, type LayoutChange } from './pin-version.ts';
import { removePinTree } from './bpffs.ts';
import { errorMessage } from '../lib/errors.ts';

const STAGING_DIR = 'migration-staging';
const READY_DIR = 'migration-ready';
const RETIRED_DIR = 'migration-retired';
const MAPS_DIR = 'maps';
const PROGS_DIR = 'progs';
const PROG_FROM_POD = 'from_pod';
const PROG_TO_POD = 'to_pod';
const AT_FDCWD = -100;
const RENAME_EXCHANGE = 2;

/**
 * A debug knob for the crash tests: with SLUICE_MIGRATION_CRASH_AFTER=<step>
 * the migration stops right after that step as a crash would, leaving every
 * pin as it is (no cleanup). Unset, it costs one environment lookup.
 */
export const MIGRATION_CRASH_ENV = 'SLUICE_MIGRATION_CRASH_AFTER';
/** The steps a crash may be injected after. */
export const MIGRATION_STEPS = ['staged', 'ready', 'links', 'exchange-maps'] as const;
export type MigrationStepName = (typeof MIGRATION_STEPS)[number];

/** Thrown by an injected crash; nothing is cleaned up behind it. */
export class InjectedCrash extends Error {
  constructor(step: MigrationStepName) {
    super(`injected crash after migration step '${step}' (${MIGRATION_CRASH_ENV} is set)`);
    this.name = 'InjectedCrash';
  }
}

function crashPoint(step: MigrationStepName): void {
  if (process.env[MIGRATION_CRASH_ENV] === step) throw new InjectedCrash(step);
}

/**
 * A debug knob for the tests of the catch-up under real traffic: with
 * SLUICE_MIGRATION_PAUSE_UNTIL=<path> the migration waits after the first
 * copy of the maps, while the old programs keep forwarding, until that
 * file exists. Unset, it costs one environment lookup.
 */
export const MIGRATION_PAUSE_ENV = 'SLUICE_MIGRATION_PAUSE_UNTIL';
const PAUSE_POLL_MS = 20;

function pauseAfterCopy(): void {
  const until = process.env[MIGRATION_PAUSE_ENV];
  while (until && !existsSync(until)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, PAUSE_POLL_MS);
}

/**
 * For tests only: called synchronously after the first copy of the changed
 * maps (the old programs still run: the window the catch-up covers; staged:
 * the new maps directory) and after every link switched, before the catch-up.
 */
export const migrationTestHooks: { afterCopy?: (stagedMaps: string) => void; afterSwitch?: (newMaps: string) => void } = {};

/** What a migration did. */
export interface MigrationReport {
  /** The changed maps and what was done with each (entries copied, or reset). */
  maps: { map: string; action: 'copy' | 'reset'; entries: number }[];
  /** TCX links switched to the new programs, and those that could not be. */
  links: number;
  failed: string[];
  /** What the catch-up carried into each copied map after the switch. */
  caughtUp: CatchUpResult[];
}

/** Loads the object against pinned maps under mapsDir, pinning the programs it creates at progsDir (the loader's). */
export type LoadInto = (mapsDir: string, progsDir: string) => void;

/** The maps of a pinned datapath that cannot be migrated to this object's layouts. */
export function refusedMaps(objectBytes: Buffer, mapsDir: string, objectName: string, changes: LayoutChange[]): { steps: MigrationStep[]; refused: MigrationRefusal[] } {
  const wanted = definedLayouts(objectBytes, mapsDir, objectName, changes.map((c) => c.map));
  const steps: MigrationStep[] = [];
  const refused: MigrationRefusal[] = [];
  for (const c of changes) {
    const plan = planMigration(c.map, pinnedLayout(join(mapsDir, c.map), c.map), wanted.get(c.map)!);
    if (isRefusal(plan)) refused.push(plan);
    else steps.push(plan);
  }
  return { steps, refused };
}

/**
 * Migrates the pins under pinDir to the object's layouts by the steps of
 * refusedMaps (none refused). A failure before the commit point removes
 * the staging directory and throws: nothing pinned changed. After it, the migration is
 * finished here or by the next agent.
 */
export function migratePins(pinDir: string, steps: MigrationStep[], objectBytes: Buffer, objectName: string, version: string, loadInto: LoadInto): MigrationReport {
  const mapsDir = join(pinDir, MAPS_DIR);
  const staging = join(pinDir, STAGING_DIR);
  const report: MigrationReport = { maps: [], links: 0, failed: [], caughtUp: [] };
  /** The entries of each copied map as first copied, which the catch-up compares with. */
  const bases = new Map<string, EntrySet>();
  removePinTree(staging);
  try {
    mkdirSync(join(staging, MAPS_DIR), { recursive: true });
    mkdirSync(join(staging, PROGS_DIR), { recursive: true });
    const changed = new Set(steps.map((s) => s.map));
    // Unchanged maps are shared: the same kernel map pinned once more, which libbpf then re-uses.
    for (const name of definedLayouts(objectBytes, mapsDir, objectName, []).keys()) {
      if (changed.has(name) || !existsSync(join(mapsDir, name))) continue;
      const fd = objGet(join(mapsDir, name), `map ${name}`);
      try {
        objPin(fd, join(staging, MAPS_DIR, name), `map ${name} (staged)`);
      } finally {
        closeFd(fd);
      }
    }
    loadInto(join(staging, MAPS_DIR), join(staging, PROGS_DIR));
    for (const step of steps) {
      const keep = step.action === 'copy' && catchUpOf(step.map) !== 'none';
      report.maps.push({ map: step.map, action: step.action, entries: step.action === 'copy' ? copyMap(step.map, mapsDir, join(staging, MAPS_DIR), step.copyBytes, keep ? bases : undefined) : 0 });
    }
    migrationTestHooks.afterCopy?.(join(staging, MAPS_DIR));
    pauseAfterCopy();
    crashPoint('staged');
    pinVersion(join(staging, MAPS_DIR), version);
    pinVersion(join(staging, PROGS_DIR), version);
    pinVersion(staging, version);
  } catch (err: unknown) {
    if (!(err instanceof InjectedCrash)) removePinTree(staging);
    throw err;
  }
  renameSync(staging, join(pinDir, READY_DIR));
  crashPoint('ready');
  const finished = finishMigration(pinDir, bases);
  return { ...report, links: finished.links, failed: finished.failed, caughtUp: finished.caughtUp };
}

/**
 * Puts right what an interrupted migration left under pinDir, before
 * anything else looks at the pins: an incomplete staging directory is
 * removed, a ready migration finished, a retired set removed. Returns the finished
 * migration's links, or null when there was none to finish.
 */
export function recoverPins(pinDir: string): { links: number; failed: string[] } | null {
  removePinTree(join(pinDir, STAGING_DIR));
  const finished = existsSync(join(pinDir, READY_DIR)) ? finishMigration(pinDir, new Map()) : null;
  removePinTree(join(pinDir, RETIRED_DIR));
  return finished && { links: finished.links, failed: finished.failed };
}

/**
 * Steps 1 to 4 of the file comment, from the state the directories are in;
 * safe to run again after a crash. bases: the entries of the copied maps as
 * first copied (empty when finishing after a crash).
 */
function finishMigration(pinDir: string, bases: Map<string, EntrySet>): { links: number; failed: string[]; caughtUp: CatchUpResult[] } {
  const ready = join(pinDir, READY_DIR);
  const target = readPinnedVersion(ready);
  if (target === null) throw new Error(`an interrupted migration under ${ready} names no target version: remove ${ready} if the pins in ${pinDir} are complete`);
  const inPlace = (dir: string): boolean => readPinnedVersion(join(pinDir, dir)) === target;
  const newer = (dir: string): string => join(inPlace(dir) ? pinDir : ready, dir);
  const older = (dir: string): string => join(inPlace(dir) ? ready : pinDir, dir);

  const switched = switchTcxLinks(join(pinDir, 'links'), join(newer(PROGS_DIR), PROG_FROM_POD), join(newer(PROGS_DIR), PROG_TO_POD));
  migrationTestHooks.afterSwitch?.(newer(MAPS_DIR));
  const caughtUp = catchUp(older(MAPS_DIR), newer(MAPS_DIR), bases);
  crashPoint('links');
  if (!inPlace(MAPS_DIR)) exchange(join(pinDir, MAPS_DIR), join(ready, MAPS_DIR));
  crashPoint('exchange-maps');
  if (!inPlace(PROGS_DIR)) exchange(join(pinDir, PROGS_DIR), join(ready, PROGS_DIR));
  const retired = join(pinDir, RETIRED_DIR);
  removePinTree(retired);
  renameSync(ready, retired);
  removePinTree(retired);
  return { ...switched, caughtUp };
}

/**
 * Switches every pinned TCX link under linksDir to the program for its
 * direction, atomically each (BPF_LINK_UPDATE). Links are taken in name
 * order, so a veth's two (<veth>_egress, <veth>_ingress) switch one right
 * after the other. A link already running the program is left alone.
 */
export function switchTcxLinks(linksDir: string, fromPodPath: string, toPodPath: string): { links: number; failed: string[] } {
  const fromPod = objGet(fromPodPath, 'program from_pod');
  const toPod = objGet(toPodPath, 'program to_pod');
  const ids = { fromPod: readProgramId(fromPod, 'program from_pod'), toPod: readProgramId(toPod, 'program to_pod') };
  const failed: string[] = [];
  let links = 0;
  try {
    for (const name of existsSync(linksDir) ? readdirSync(linksDir).sort() : []) {
      const path = join(linksDir, name);
      let linkFd = -1;
      try {
        linkFd = objGet(path, 'link');
        const info = readLinkInfo(linkFd, `link ${path}`);
        if (info.type !== BPF_LINK_TYPE_TCX) continue;
        const ingress = info.tcx?.attachType === BPF_TCX_INGRESS;
        if (info.progId !== (ingress ? ids.fromPod : ids.toPod)) linkUpdate(linkFd, ingress ? fromPod : toPod, `switch link ${path} to the new program`);
        links++;
      } catch (err: unknown) {
        if (isBpfError(err, 'ENOENT')) continue; // unpinned meanwhile (a CNI DEL while the agent is away)
        failed.push(`${name}: ${errorMessage(err)}`);
      } finally {
        if (linkFd >= 0) closeFd(linkFd);
      }
    }
  } finally {
    closeFd(fromPod);
    closeFd(toPod);
  }
  return { links, failed };
}

/** Carries into each copied map what the old programs did to it since its first copy (map-catch-up.ts). */
function catchUp(oldMapsDir: string, newMapsDir: string, bases: Map<string, EntrySet>): CatchUpResult[] {
  const results: CatchUpResult[] = [];
  for (const name of readdirSync(newMapsDir)) {
    if (name === VERSION_MAP || MAP_TREATMENT[name]?.treatment === 'reset' || !existsSync(join(oldMapsDir, name))) continue;
    const oldLayout = pinnedLayout(join(oldMapsDir, name), name);
    const newLayout = pinnedLayout(join(newMapsDir, name), name);
    if (oldLayout.id === newLayout.id) continue; // shared, not copied
    const plan = planMigration(name, oldLayout, newLayout);
    if (isRefusal(plan) || plan.action !== 'copy') continue;
    results.push(withMaps(name, oldMapsDir, newMapsDir, (oldFd, newFd) => catchUpMap(name, oldFd, newFd, oldLayout, newLayout, plan.copyBytes, catchUpOf(name), bases.get(name))));
  }
  return results;
}

/** The first copy of a map; its entries as copied are kept in `bases` when given. */
function copyMap(name: string, fromDir: string, toDir: string, copyBytes: number, bases: Map<string, EntrySet> | undefined): number {
  const from = pinnedLayout(join(fromDir, name), name);
  const to = pinnedLayout(join(toDir, name), name);
  const keep = bases && new EntrySet(from.keySize, valueBytesOf(from).bytes);
  if (keep) bases.set(name, keep);
  return withMaps(name, fromDir, toDir, (oldFd, newFd) => copyEntries(name, oldFd, newFd, from, to, copyBytes, 'all', keep));
}

/** Runs use with the map `name` opened from both directories. */
function withMaps<T>(name: string, fromDir: string, toDir: string, use: (oldFd: number, newFd: number) => T): T {
  const oldFd = objGet(join(fromDir, name), `map ${name}`);
  try {
    const newFd = objGet(join(toDir, name), `map ${name} (new)`);
    try {
      return use(oldFd, newFd);
    } finally {
      closeFd(newFd);
    }
  } finally {
    closeFd(oldFd);
  }
}

function pinnedLayout(path: string, name: string): MapLayout & { id: number } {
  const fd = objGet(path, `map ${name}`);
  try {
    const info = readMapInfo(fd, `map ${name}`);
    return { ...info, ...pinnedMapTypes(fd, `map ${name}`) };
  } finally {
    closeFd(fd);
  }
}

/** The layouts the object defines for the maps it pins (all of them when `names` is empty). */
function definedLayouts(objectBytes: Buffer, mapsDir: string, objectName: string, names: string[]): Map<string, MapLayout> {
  const obj = openObjectFromMemory(objectBytes, { objectName, pinRootPath: mapsDir });
  try {
    const out = new Map<string, MapLayout>();
    for (const def of mapDefinitions(obj)) {
      if (def.name.startsWith('.') || def.name.includes('.')) continue; // .rodata, .bss: internal, never pinned
      if (names.length > 0 && !names.includes(def.name)) continue;
      out.set(def.name, { type: def.type, keySize: def.keySize, valueSize: def.valueSize, maxEntries: def.maxEntries, mapFlags: def.mapFlags, ...definedMapTypes(obj, def.name) });
    }
    return out;
  } finally {
    closeObject(obj);
  }
}

let renameat2: ((...args: unknown[]) => unknown) | undefined;

/** Swaps two paths atomically (renameat2 RENAME_EXCHANGE, which bpffs supports). */
function exchange(a: string, b: string): void {
  renameat2 ??= koffi.load('libc.so.6').func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)');
  if (Number(renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)) !== 0) {
    throw new Error(`exchange ${a} and ${b}: errno ${koffi.errno()}`);
  }
}


/**
 * The catch-up of a map migration (issue 33), against the real kernel: the
 * old programs keep opening and ending flows between the copy of a map and
 * the switch of the last link, and the new ones start right after it. Here
 * both are played by writes to the pinned maps at those two moments (the
 * migration's test hooks), in an upgrade that resizes conntrack, ct_counts
 * and ep_counters, and in the downgrade back. A flow ended in the window
 * must not come back, one opened there must not be lost, a change there
 * must be carried, whatever the new programs did since must stand, and the
 * counts must add up. Then: a crash in the middle of an upgrade followed by
 * the older agent (a rollback) ends on the older datapath with the entries.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readLinkInfo, readMapInfo, readProgramId } from '../datapath/bpf-info.ts';
import { closeFd, mapDeleteElem, mapLookupElem, mapUpdateElem, numPossibleCpus, objGet } from '../datapath/libbpf.ts';
import { loadDatapath } from '../datapath/loader.ts';
import { InjectedCrash, MIGRATION_CRASH_ENV, MIGRATION_STEPS, migrationTestHooks } from '../datapath/pin-migration.ts';
import { datapathVersion, readPinnedVersion } from '../datapath/pin-version.ts';
import { attachTcx } from '../datapath/tcx.ts';
import { withMakefileBuild } from './support/bpf-build.ts';

const TAG = randomBytes(3).toString('hex');
const BPF_ANY = 0;
/** Resizes conntrack, ct_counts and ep_counters (among others): all three are migrated. */
const GROWN_FLAGS = '-DSLUICE_MAX_ENDPOINTS=70000 -DSLUICE_MAX_POLICY=1100000 -DSLUICE_MAX_CONNTRACK=300000 -DSLUICE_MAX_FRAGMENTS=131000';
/** struct ct_value: 56 bytes; last_seen_ns at 8. */
const CT_VALUE_BYTES = 56;
const CT_LAST_SEEN = 8;

function withPinned<T>(path: string, use: (fd: number) => T): T {
  const fd = objGet(path);
  try {
    return use(fd);
  } finally {
    closeFd(fd);
  }
}

const info = (mapsDir: string, map: string) => withPinned(join(mapsDir, map), (fd) => readMapInfo(fd, map));
const put = (mapsDir: string, map: string, key: Buffer, value: Buffer) => withPinned(join(mapsDir, map), (fd) => mapUpdateElem(fd, key, value, BPF_ANY, map));
const del = (mapsDir: string, map: string, key: Buffer) => withPinned(join(mapsDir, map), (fd) => mapDeleteElem(fd, key, map));
function get(mapsDir: string, map: string, key: Buffer, bytes: number): Buffer | null {
  const value = Buffer.alloc(bytes);
  return withPinned(join(mapsDir, map), (fd) => (mapLookupElem(fd, key, value, map) ? value : null));
}

/** A conntrack value whose last_seen_ns says who wrote it last. */
function ctValue(lastSeen: bigint): Buffer {
  const v = randomBytes(CT_VALUE_BYTES);
  v.writeBigUInt64LE(lastSeen, CT_LAST_SEEN);
  return v;
}

/** struct ct_count: entries, fragments (s64 each). */
function ctCount(entries: bigint, fragments: bigint): Buffer {
  const v = Buffer.alloc(16);
  v.writeBigInt64LE(entries, 0);
  v.writeBigInt64LE(fragments, 8);
  return v;
}

/** ep_counters' per-CPU struct counter_value (packets, bytes), the same on every CPU. */
function perCpuCounter(packets: bigint, bytes: bigint): Buffer {
  const v = Buffer.alloc(16 * numPossibleCpus());
  for (let cpu = 0; cpu < numPossibleCpus(); cpu++) {
    v.writeBigUInt64LE(packets, cpu * 16);
    v.writeBigUInt64LE(bytes, cpu * 16 + 8);
  }
  return v;
}

describe('map migration: what the programs do during the migration window', () => {
  const pinDir = `/sys/fs/bpf/up33-catchup-${TAG}`;
  const mapsDir = join(pinDir, 'maps');
  const veth = `up33${TAG}`;
  const links = join(pinDir, 'links');
  let normal: Buffer;
  let grown: Buffer;

  beforeAll(() => {
    normal = withMakefileBuild((p) => readFileSync(p));
    grown = withMakefileBuild((p) => readFileSync(p), undefined, GROWN_FLAGS);
    execFileSync('ip', ['link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`]);
  }, 240_000);
  afterEach(() => {
    delete migrationTestHooks.afterCopy;
    delete migrationTestHooks.afterSwitch;
    delete process.env[MIGRATION_CRASH_ENV];
  });
  afterAll(() => {
    try {
      execFileSync('ip', ['link', 'del', `${veth}a`], { stdio: 'ignore' });
    } catch {
      // already gone
    }
    rmSync(pinDir, { recursive: true, force: true });
  });

  const progId = (path: string) => withPinned(path, (fd) => readProgramId(fd, path));
  const linkProgId = (path: string) => withPinned(path, (fd) => readLinkInfo(fd, path).progId);

  it('starts from a datapath with a veth attached', () => {
    loadDatapath({ pinDir, objectBytes: normal }).close();
    const ifindex = Number(readFileSync(`/sys/class/net/${veth}a/ifindex`, 'utf8'));
    attachTcx({ ifindex, progPinPath: join(pinDir, 'progs', 'from_pod'), direction: 'ingress', linkPinPath: join(links, `${veth}a_ingress`) });
    attachTcx({ ifindex, progPinPath: join(pinDir, 'progs', 'to_pod'), direction: 'egress', linkPinPath: join(links, `${veth}a_egress`) });
  });

  for (const direction of ['upgrade', 'downgrade'] as const) {
    it(`${direction}: flows ended in the window stay ended, flows opened there are kept, changes there carried, the new programs' own changes stand, counts add up`, () => {
      const target = direction === 'upgrade' ? grown : normal;
      expect(readPinnedVersion(mapsDir)).toBe(datapathVersion(direction === 'upgrade' ? normal : grown));
      const ctKey = () => randomBytes(info(mapsDir, 'conntrack').keySize);
      const k = { ended: ctKey(), changed: ctKey(), kept: ctKey(), opened: ctKey(), endedByNew: ctKey(), changedByBoth: ctKey(), reopenedByNew: ctKey() };
      const before = { ended: ctValue(1n), changed: ctValue(1n), kept: ctValue(1n), endedByNew: ctValue(1n), changedByBoth: ctValue(1n), reopenedByNew: ctValue(1n) };
      for (const [name, value] of Object.entries(before)) put(mapsDir, 'conntrack', k[name as keyof typeof k], value);
      const endpoint = randomBytes(4);
      put(mapsDir, 'ct_counts', endpoint, ctCount(10n, 2n));
      const epKey = randomBytes(info(mapsDir, 'ep_counters').keySize);
      put(mapsDir, 'ep_counters', epKey, perCpuCounter(100n, 5000n));
      const ctIdBefore = info(mapsDir, 'conntrack').id;

      const inWindow = { changed: ctValue(2n), opened: ctValue(2n), changedByBoth: ctValue(2n), reopenedByNew: ctValue(2n) };
      const byNew = { changedByBoth: ctValue(3n), reopenedByNew: ctValue(3n) };
      let windowSeen = false;
      migrationTestHooks.afterCopy = () => {
        // The old programs, on the old maps, after the copy: one flow ended (RST), one opened, two changed, one ended and opened again.
        windowSeen = true;
        expect(del(mapsDir, 'conntrack', k.ended)).toBe(true);
        put(mapsDir, 'conntrack', k.changed, inWindow.changed);
        put(mapsDir, 'conntrack', k.opened, inWindow.opened);
        put(mapsDir, 'conntrack', k.changedByBoth, inWindow.changedByBoth);
        put(mapsDir, 'conntrack', k.reopenedByNew, inWindow.reopenedByNew);
        put(mapsDir, 'ct_counts', endpoint, ctCount(10n + 1n - 1n + 3n, 2n - 1n)); // opened 1, ended 1, 3 more; a datagram reassembled
        put(mapsDir, 'ep_counters', epKey, perCpuCounter(107n, 5700n));
      };
      migrationTestHooks.afterSwitch = (newMaps) => {
        // The new programs, on the new maps, before the catch-up.
        expect(newMaps).not.toBe(mapsDir);
        expect(del(newMaps, 'conntrack', k.endedByNew)).toBe(true);
        put(newMaps, 'conntrack', k.changedByBoth, byNew.changedByBoth);
        del(newMaps, 'conntrack', k.reopenedByNew);
        put(newMaps, 'conntrack', k.reopenedByNew, byNew.reopenedByNew);
        const count = get(newMaps, 'ct_counts', endpoint, 16)!;
        put(newMaps, 'ct_counts', endpoint, ctCount(count.readBigInt64LE(0) + 1n, count.readBigInt64LE(8))); // one flow opened by the new programs
      };

      const d = loadDatapath({ pinDir, objectBytes: target });
      d.close();
      expect(windowSeen).toBe(true);
      expect(d.runningVersion).toBe(datapathVersion(target));
      expect(d.replaced?.migrated.map((m) => m.map)).toEqual(expect.arrayContaining(['conntrack', 'ct_counts', 'ep_counters']));
      expect(info(mapsDir, 'conntrack').id).not.toBe(ctIdBefore);
      expect(info(mapsDir, 'conntrack').maxEntries).toBe(direction === 'upgrade' ? 300_000 : 262_144);

      const ct = (key: Buffer) => get(mapsDir, 'conntrack', key, CT_VALUE_BYTES);
      expect(ct(k.ended), 'a flow ended in the window').toBeNull();
      expect(ct(k.opened), 'a flow opened in the window').toEqual(inWindow.opened);
      expect(ct(k.changed), 'a flow changed in the window').toEqual(inWindow.changed);
      expect(ct(k.kept), 'a flow untouched').toEqual(before.kept);
      expect(ct(k.endedByNew), 'a flow the new programs ended').toBeNull();
      expect(ct(k.changedByBoth), 'a flow both changed: the new programs saw the later packet').toEqual(byNew.changedByBoth);
      expect(ct(k.reopenedByNew), 'a tuple the new programs opened again').toEqual(byNew.reopenedByNew);
      expect(get(mapsDir, 'ct_counts', endpoint, 16), 'ct_counts: 10 + 3 in the window + 1 by the new programs').toEqual(ctCount(14n, 1n));
      expect(get(mapsDir, 'ep_counters', epKey, 16 * numPossibleCpus()), 'ep_counters: what the old programs counted in the window').toEqual(perCpuCounter(107n, 5700n));

      expect(linkProgId(join(links, `${veth}a_ingress`))).toBe(progId(join(pinDir, 'progs', 'from_pod')));
      expect(linkProgId(join(links, `${veth}a_egress`))).toBe(progId(join(pinDir, 'progs', 'to_pod')));
      expect(readdirSync(pinDir).filter((n) => n.startsWith('migration-'))).toEqual([]);
    });
  }

  for (const step of MIGRATION_STEPS) {
    it(`a rollback: an upgrade that crashed after step '${step}', then the older datapath starts, ends on the older datapath with the entries and every link on its programs`, () => {
      expect(readPinnedVersion(mapsDir)).toBe(datapathVersion(normal));
      const key = randomBytes(info(mapsDir, 'conntrack').keySize);
      const value = ctValue(9n);
      put(mapsDir, 'conntrack', key, value);
      process.env[MIGRATION_CRASH_ENV] = step;
      expect(() => loadDatapath({ pinDir, objectBytes: grown })).toThrow(InjectedCrash);
      delete process.env[MIGRATION_CRASH_ENV];

      const d = loadDatapath({ pinDir, objectBytes: normal });
      d.close();
      expect(d.runningVersion).toBe(datapathVersion(normal));
      expect(readPinnedVersion(mapsDir)).toBe(datapathVersion(normal));
      expect(readPinnedVersion(join(pinDir, 'progs'))).toBe(datapathVersion(normal));
      expect(info(mapsDir, 'conntrack').maxEntries).toBe(262_144);
      expect(get(mapsDir, 'conntrack', key, CT_VALUE_BYTES)).toEqual(value);
      expect(linkProgId(join(links, `${veth}a_ingress`))).toBe(progId(join(pinDir, 'progs', 'from_pod')));
      expect(linkProgId(join(links, `${veth}a_egress`))).toBe(progId(join(pinDir, 'progs', 'to_pod')));
      expect(existsSync(join(pinDir, 'migration-ready'))).toBe(false);
      expect(readdirSync(pinDir).filter((n) => n.startsWith('migration-'))).toEqual([]);
    });
  }
});

/**
 * Migrating changed map layouts (issue 33, step 3), against the real kernel:
 * an object whose maps have other sizes (build flags) takes over pinned
 * maps with entries in them and a veth's two TCX links; the entries are
 * copied into the new maps, the links switched, the pins replaced; and back
 * again (a downgrade). A shrink the entries do not fit in and a changed key
 * are refused with nothing changed. A crash after each step leaves pins
 * that work and that the next load finishes.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLinkInfo, readMapInfo, readProgramId } from '../datapath/bpf-info.ts';
import { closeFd, mapLookupElem, mapUpdateElem, numPossibleCpus, objGet } from '../datapath/libbpf.ts';
import { OBJECT_NAME, loadDatapath, loadProgramsInto } from '../datapath/loader.ts';
import { closeObject, openObjectFromMemory } from '../datapath/libbpf.ts';
import { definedValueLayout, fieldsEnd, pinnedValueLayout } from '../datapath/map-btf.ts';
import { InjectedCrash, MIGRATION_CRASH_ENV, MIGRATION_STEPS, migratePins, refusedMaps } from '../datapath/pin-migration.ts';
import { DatapathLayoutError, datapathVersion, layoutChanges, readPinnedVersion } from '../datapath/pin-version.ts';
import { attachTcx } from '../datapath/tcx.ts';
import { netfilterLinks, syncNetfilterLinks } from '../datapath/netfilter.ts';
import { withMakefileBuild } from './support/bpf-build.ts';

const TAG = randomBytes(3).toString('hex');
const BPF_ANY = 0;
/** The maps a grown build resizes (bpf/sluice.h build flags), and one it leaves alone. */
const GROWN_FLAGS = '-DSLUICE_MAX_ENDPOINTS=70000 -DSLUICE_MAX_POLICY=1100000 -DSLUICE_MAX_CONNTRACK=300000 -DSLUICE_MAX_FRAGMENTS=131000';
const RESIZED = ['endpoints', 'devices', 'ct_counts', 'ep_counters', 'policy', 'conntrack', 'fragments'];
const UNCHANGED = 'ipcache';

function withPinned<T>(path: string, use: (fd: number) => T): T {
  const fd = objGet(path);
  try {
    return use(fd);
  } finally {
    closeFd(fd);
  }
}

const mapInfo = (pinDir: string, map: string) => withPinned(join(pinDir, 'maps', map), (fd) => readMapInfo(fd, map));
const progId = (path: string) => withPinned(path, (fd) => readProgramId(fd, path));
const linkProgId = (path: string) => withPinned(path, (fd) => readLinkInfo(fd, path).progId);

/** Entries of each kind written before a migration: an endpoint, a policy entry (LPM), a conntrack entry, per-CPU counters. */
function writeEntries(pinDir: string): Map<string, { key: Buffer; value: Buffer }> {
  const written = new Map<string, { key: Buffer; value: Buffer }>();
  for (const map of ['endpoints', 'conntrack', 'policy', 'ep_counters', UNCHANGED]) {
    const info = mapInfo(pinDir, map);
    const key = randomBytes(info.keySize);
    // LPM trie keys start with their prefix length: the whole key.
    if (map === 'policy' || map === UNCHANGED) key.writeUInt32LE((info.keySize - 4) * 8, 0);
    const perCpu = map === 'ep_counters' ? numPossibleCpus() : 1;
    const stride = perCpu > 1 ? Math.ceil(info.valueSize / 8) * 8 : info.valueSize;
    const value = randomBytes(stride * perCpu);
    withPinned(join(pinDir, 'maps', map), (fd) => mapUpdateElem(fd, key, value, BPF_ANY, map));
    written.set(map, { key, value });
  }
  return written;
}

function readEntry(pinDir: string, map: string, key: Buffer, bytes: number): Buffer | null {
  const value = Buffer.alloc(bytes);
  return withPinned(join(pinDir, 'maps', map), (fd) => (mapLookupElem(fd, key, value, map) ? value : null));
}

function expectEntries(pinDir: string, written: Map<string, { key: Buffer; value: Buffer }>): void {
  for (const [map, { key, value }] of written) expect(readEntry(pinDir, map, key, value.length), map).toEqual(value);
}

describe('datapath pins: migrating changed map layouts', () => {
  const pinDir = `/sys/fs/bpf/sluice-test-migrate-${TAG}`;
  const veth = `vm${TAG}`;
  const links = join(pinDir, 'links');
  let normal: Buffer;
  let grown: Buffer;
  let tiny: Buffer;
  let newKey: Buffer;
  let swappedKey: Buffer;

  beforeAll(() => {
    normal = withMakefileBuild((p) => readFileSync(p));
    grown = withMakefileBuild((p) => readFileSync(p), undefined, GROWN_FLAGS);
    tiny = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_MAX_ENDPOINTS=2');
    newKey = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_TEST_FRAG_KEY_EXTRA=1');
    swappedKey = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_TEST_FRAG_KEY_SWAP=1');
    execFileSync('ip', ['link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`]);
  }, 240_000);
  afterAll(() => {
    delete process.env[MIGRATION_CRASH_ENV];
    try {
      execFileSync('ip', ['link', 'del', `${veth}a`], { stdio: 'ignore' });
    } catch {
      // already gone
    }
    rmSync(pinDir, { recursive: true, force: true });
  });

  function attachLinks(): void {
    const ifindex = Number(readFileSync(`/sys/class/net/${veth}a/ifindex`, 'utf8'));
    attachTcx({ ifindex, progPinPath: join(pinDir, 'progs', 'from_pod'), direction: 'ingress', linkPinPath: join(links, `${veth}a_ingress`) });
    attachTcx({ ifindex, progPinPath: join(pinDir, 'progs', 'to_pod'), direction: 'egress', linkPinPath: join(links, `${veth}a_egress`) });
  }

  function expectLinksOnPinnedPrograms(): void {
    expect(linkProgId(join(links, `${veth}a_ingress`))).toBe(progId(join(pinDir, 'progs', 'from_pod')));
    expect(linkProgId(join(links, `${veth}a_egress`))).toBe(progId(join(pinDir, 'progs', 'to_pod')));
  }

  function expectNoMigrationLeft(): void {
    expect(readdirSync(pinDir).filter((d) => d.startsWith('migration-'))).toEqual([]);
  }

  it('an upgrade that resizes maps copies their entries into new maps, switches the links and replaces the pins', () => {
    loadDatapath({ pinDir, objectBytes: normal }).close();
    attachLinks();
    const written = writeEntries(pinDir);
    const before = Object.fromEntries([...RESIZED, UNCHANGED].map((m) => [m, mapInfo(pinDir, m)]));
    const oldFromPod = progId(join(pinDir, 'progs', 'from_pod'));

    const d = loadDatapath({ pinDir, objectBytes: grown });
    d.close();
    expect(d.runningVersion).toBe(datapathVersion(grown));
    expect(d.replaced?.from).toBe(datapathVersion(normal));
    expect([d.replaced?.links, d.replaced?.failed]).toEqual([2, []]);
    expect(d.replaced?.migrated.map((m) => m.map).sort()).toEqual([...RESIZED].sort());
    expect(d.replaced?.migrated.find((m) => m.map === 'conntrack')).toEqual({ map: 'conntrack', action: 'copy', entries: 1 });
    for (const m of RESIZED) {
      expect(mapInfo(pinDir, m).id, m).not.toBe(before[m]!.id);
    }
    expect(mapInfo(pinDir, 'conntrack').maxEntries).toBe(300_000);
    expect(mapInfo(pinDir, 'fragments').maxEntries).toBe(131_000);
    expect(mapInfo(pinDir, UNCHANGED).id).toBe(before[UNCHANGED]!.id); // unchanged: shared, not copied
    expectEntries(pinDir, written);
    expect(progId(join(pinDir, 'progs', 'from_pod'))).not.toBe(oldFromPod);
    expectLinksOnPinnedPrograms();
    expect(readPinnedVersion(join(pinDir, 'maps'))).toBe(datapathVersion(grown));
    expectNoMigrationLeft();
  });

  it('a downgrade to the older object migrates back by the same rules (the fragment table grows, conntrack shrinks)', () => {
    const written = writeEntries(pinDir);
    const d = loadDatapath({ pinDir, objectBytes: normal });
    d.close();
    expect(d.runningVersion).toBe(datapathVersion(normal));
    expect(d.replaced?.from).toBe(datapathVersion(grown));
    expect(d.replaced?.migrated.map((m) => m.map).sort()).toEqual([...RESIZED].sort());
    expect(mapInfo(pinDir, 'fragments').maxEntries).toBe(131_072);
    expect(mapInfo(pinDir, 'conntrack').maxEntries).toBe(262_144);
    expectEntries(pinDir, written);
    expectLinksOnPinnedPrograms();
    expectNoMigrationLeft();
  });

  it('refuses a shrink the entries do not fit in, and a changed key (its size, or its fields at the same size), naming the map and changing nothing', () => {
    writeEntries(pinDir);
    writeEntries(pinDir); // three endpoints now: more than 2
    const pinnedBefore = readdirSync(join(pinDir, 'maps')).sort();
    const idBefore = mapInfo(pinDir, 'endpoints').id;
    const fromPod = progId(join(pinDir, 'progs', 'from_pod'));
    expect(() => loadDatapath({ pinDir, objectBytes: tiny })).toThrow(/map endpoints: \d+ entries do not fit in the new map of 2/);
    let error: unknown;
    try {
      loadDatapath({ pinDir, objectBytes: newKey }).close();
    } catch (err: unknown) {
      error = err;
    }
    expect(error).toBeInstanceOf(DatapathLayoutError);
    expect((error as Error).message).toMatch(/map fragments: key layout changed \(44 bytes pinned, 48 wanted\)/);
    expect((error as Error).message).toMatch(/Nothing was changed/);
    // A key of the same size whose fields moved: only BTF shows it.
    expect(() => loadDatapath({ pinDir, objectBytes: swappedKey })).toThrow(/map fragments: key layout changed \(its fields differ: saddr, daddr, id, endpoint, .* pinned, saddr, daddr, endpoint, id, .* wanted\)/);
    expect(readdirSync(join(pinDir, 'maps')).sort()).toEqual(pinnedBefore);
    expect(mapInfo(pinDir, 'endpoints').id).toBe(idBefore);
    expect(progId(join(pinDir, 'progs', 'from_pod'))).toBe(fromPod);
    expect(readPinnedVersion(join(pinDir, 'maps'))).toBe(datapathVersion(normal));
    expectLinksOnPinnedPrograms();
    expectNoMigrationLeft();
  });

  for (const step of MIGRATION_STEPS) {
    it(`a crash after step '${step}' leaves pins that work, and the next load finishes the migration`, () => {
      const from = readPinnedVersion(join(pinDir, 'maps'));
      const [crashing, next] = from === datapathVersion(normal) ? [grown, grown] : [normal, normal];
      const written = writeEntries(pinDir);
      process.env[MIGRATION_CRASH_ENV] = step;
      try {
        expect(() => loadDatapath({ pinDir, objectBytes: crashing })).toThrow(InjectedCrash);
      } finally {
        delete process.env[MIGRATION_CRASH_ENV];
      }
      // What a crash leaves: pins in place whose programs run, every link on a loaded program.
      for (const dir of ['maps', 'progs']) expect(existsSync(join(pinDir, dir, 'sluice_version')) || dir === 'progs').toBe(true);
      for (const side of ['ingress', 'egress']) expect(linkProgId(join(links, `${veth}a_${side}`))).toBeGreaterThan(0);

      const d = loadDatapath({ pinDir, objectBytes: next });
      d.close();
      expect(d.runningVersion).toBe(datapathVersion(next));
      expect(readPinnedVersion(join(pinDir, 'maps'))).toBe(datapathVersion(next));
      expect(readPinnedVersion(join(pinDir, 'progs'))).toBe(datapathVersion(next));
      expectEntries(pinDir, written);
      expectLinksOnPinnedPrograms();
      expectNoMigrationLeft();
    });
  }

  it('netfilter links a crash left on the old programs after a migration are replaced at the next start, without a reload', () => {
    const programs = { serviceEgress: join(pinDir, 'progs', 'service_egress'), vxlanIn: join(pinDir, 'progs', 'vxlan_in') };
    const dir = join(pinDir, 'netfilter');
    syncNetfilterLinks({ dir, programs, vxlan: false, reload: true });
    const from = readPinnedVersion(join(pinDir, 'maps'));
    // The migration, then a crash before the agent reloaded its netfilter links.
    loadDatapath({ pinDir, objectBytes: from === datapathVersion(normal) ? grown : normal }).close();
    const stale = netfilterLinks(dir).map((l) => l.progId);
    expect(stale.every((id) => id !== progId(programs.serviceEgress))).toBe(true);
    // The next start adopts (nothing to migrate) and syncs without a reload.
    const again = loadDatapath({ pinDir, objectBytes: from === datapathVersion(normal) ? grown : normal });
    again.close();
    expect(again.replaced).toBeNull();
    syncNetfilterLinks({ dir, programs, vxlan: false, reload: false });
    const links = netfilterLinks(dir);
    expect(links).toHaveLength(4);
    for (const l of links) expect(l.progId, l.name).toBe(progId(programs.serviceEgress));
  });
});

/*
 * A value grown at its end cannot go through loadDatapath in a test (the
 * agent's ABI mirror, abi.ts, knows only the real sizes), so this drives the
 * same migration (pin-migration.ts) with the object's own BTF, for a
 * conntrack value with a field added at its end (build flags in bpf/sluice.h).
 */
describe('datapath pins: migrating a value that grew at its end', () => {
  const pinDir = `/sys/fs/bpf/sluice-test-migrate-value-${TAG}`;
  const mapsDir = join(pinDir, 'maps');
  let normal: Buffer;
  let extra: Buffer;
  let middle: Buffer;

  beforeAll(() => {
    normal = withMakefileBuild((p) => readFileSync(p));
    extra = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_TEST_CT_VALUE_EXTRA=1');
    middle = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_TEST_CT_VALUE_MIDDLE=1');
  }, 240_000);
  afterAll(() => rmSync(pinDir, { recursive: true, force: true }));

  function migrate(objectBytes: Buffer): ReturnType<typeof migratePins> {
    const { steps, refused } = refusedMaps(objectBytes, mapsDir, OBJECT_NAME, layoutChanges(objectBytes, mapsDir, OBJECT_NAME));
    expect(refused).toEqual([]);
    return migratePins(pinDir, steps, objectBytes, OBJECT_NAME, datapathVersion(objectBytes), (m, p) => loadProgramsInto(objectBytes, m, p));
  }

  it('reads the same value fields from the pinned map (kernel BTF) as from the object', () => {
    loadDatapath({ pinDir, objectBytes: normal }).close();
    const pinned = withPinned(join(mapsDir, 'conntrack'), (fd) => pinnedValueLayout(fd, 'conntrack'));
    const obj = openObjectFromMemory(normal, { objectName: OBJECT_NAME, pinRootPath: mapsDir });
    try {
      expect(pinned).toEqual(definedValueLayout(obj, 'conntrack'));
    } finally {
      closeObject(obj);
    }
    expect(pinned?.typeName).toBe('ct_value');
    expect(pinned?.fields?.[0]).toEqual({ name: 'created_ns', bitOffset: 0, bytes: 8 });
    expect(fieldsEnd(pinned!.fields!)).toBe(56);
  });

  it('copies the old fields, zero-extends the new one, and drops it again on a downgrade', () => {
    const key = randomBytes(mapInfo(pinDir, 'conntrack').keySize);
    const value = randomBytes(56);
    withPinned(join(mapsDir, 'conntrack'), (fd) => mapUpdateElem(fd, key, value, BPF_ANY, 'conntrack'));

    const up = migrate(extra);
    expect(up.maps).toEqual([{ map: 'conntrack', action: 'copy', entries: 1 }]);
    expect(mapInfo(pinDir, 'conntrack').valueSize).toBe(64);
    expect(readEntry(pinDir, 'conntrack', key, 64)).toEqual(Buffer.concat([value, Buffer.alloc(8)]));
    // The new programs fill the new field; a downgrade drops it and keeps the rest.
    withPinned(join(mapsDir, 'conntrack'), (fd) => mapUpdateElem(fd, key, Buffer.concat([value, Buffer.alloc(8, 0xee)]), BPF_ANY, 'conntrack'));
    const down = migrate(normal);
    expect(down.maps).toEqual([{ map: 'conntrack', action: 'copy', entries: 1 }]);
    expect(readEntry(pinDir, 'conntrack', key, 56)).toEqual(value);
    expect(readPinnedVersion(mapsDir)).toBe(datapathVersion(normal));
  });

  it('refuses a value changed in the middle, naming the map and the field', () => {
    const { refused } = refusedMaps(middle, mapsDir, OBJECT_NAME, layoutChanges(middle, mapsDir, OBJECT_NAME));
    expect(refused).toHaveLength(1);
    expect(refused[0]!.map).toBe('conntrack');
    expect(refused[0]!.reason).toMatch(/value layout changed \(56 bytes pinned, 64 wanted\): field last_seen_ns \(bit 64, 8 bytes\) became test_middle/);
    expect(() => loadDatapath({ pinDir, objectBytes: middle })).toThrow(/map conntrack: value layout changed/);
  });
});

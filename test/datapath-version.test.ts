/**
 * The pins say what they are (issue 33, steps 1 and 2), against the real
 * kernel: a load records its object's version beside its maps; the same
 * object adopts them; an object with the same layouts replaces the
 * programs and switches every TCX link to them (BPF_LINK_UPDATE), the maps
 * and their entries kept; an object whose map layout changed (a fragment
 * key with a field more, behind a build flag) is refused with the map
 * named, and nothing pinned is removed or changed.
 */
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDatapath } from '../datapath/loader.ts';
import { DatapathLayoutError, datapathVersion, readPinnedVersion } from '../datapath/pin-version.ts';
import { withMakefileBuild } from './support/bpf-build.ts';
import { execFileSync } from 'node:child_process';
import * as tcx from '../datapath/tcx.ts';
import { readLinkInfo, readProgramId } from '../datapath/bpf-info.ts';
import { closeFd, objGet } from '../datapath/libbpf.ts';

function progId(path: string): number {
  const fd = objGet(path);
  try {
    return readProgramId(fd, path);
  } finally {
    closeFd(fd);
  }
}

function linkProgId(path: string): number {
  const fd = objGet(path);
  try {
    return readLinkInfo(fd, path).progId;
  } finally {
    closeFd(fd);
  }
}

describe('datapath pins: version and layouts', () => {
  const pinDir = `/sys/fs/bpf/sluice-test-version-${randomBytes(3).toString('hex')}`;
  let normal: Buffer;
  let resized: Buffer;
  let relinked: Buffer;

  beforeAll(() => {
    normal = withMakefileBuild((p) => readFileSync(p));
    // A key no migration can carry (a fragment key with a field more); resized max_entries are migrated (datapath-migration.test.ts).
    resized = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_TEST_FRAG_KEY_EXTRA=1');
    // The same layouts, another object: a harmless extra define changes the bytes (debug info), not the maps.
    relinked = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_TEST_VARIANT=1 -gdwarf-4');
  }, 120_000);
  afterAll(() => rmSync(pinDir, { recursive: true, force: true }));

  it('records the version of the object that pinned the maps, and adopts them with the same object', () => {
    const first = loadDatapath({ pinDir, objectBytes: normal });
    first.close();
    expect(first.adopted).toBe(false);
    expect(first.version).toBe(datapathVersion(normal));
    expect(readPinnedVersion(join(pinDir, 'maps'))).toBe(first.version);
    const again = loadDatapath({ pinDir, objectBytes: normal });
    again.close();
    expect([again.adopted, again.runningVersion]).toEqual([true, first.version]);
  });

  it('adopts pins of another object with the same layouts as they are when told not to replace, and says which version runs', () => {
    expect(datapathVersion(relinked)).not.toBe(datapathVersion(normal));
    const d = loadDatapath({ pinDir, objectBytes: relinked, replace: false });
    d.close();
    expect(d.adopted).toBe(true);
    expect(d.version).toBe(datapathVersion(relinked));
    expect(d.runningVersion).toBe(datapathVersion(normal));
    expect(d.replaced).toBeNull();
  });

  it("replaces another version's programs and switches every TCX link to them, keeping the maps and their entries", () => {
    const { attachTcx } = tcx;
    const veth = `vv${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`]);
    try {
      const ifindex = Number(readFileSync(`/sys/class/net/${veth}a/ifindex`, 'utf8'));
      const links = join(pinDir, 'links');
      attachTcx({ ifindex, progPinPath: join(pinDir, 'progs', 'from_pod'), direction: 'ingress', linkPinPath: join(links, `${veth}a_ingress`) });
      attachTcx({ ifindex, progPinPath: join(pinDir, 'progs', 'to_pod'), direction: 'egress', linkPinPath: join(links, `${veth}a_egress`) });
      const before = { from: progId(join(pinDir, 'progs', 'from_pod')), to: progId(join(pinDir, 'progs', 'to_pod')) };
      expect(linkProgId(join(links, `${veth}a_ingress`))).toBe(before.from);
      // An entry written under the old programs must still be there under the new ones.
      const old = loadDatapath({ pinDir, objectBytes: normal, replace: false });
      old.maps.config.update(Buffer.alloc(4), Buffer.alloc(old.maps.config.valueSize, 7));
      old.close();

      const d = loadDatapath({ pinDir, objectBytes: relinked });
      try {
        expect(d.replaced).toEqual({ from: datapathVersion(normal), links: 2, failed: [], migrated: [] });
        expect(d.runningVersion).toBe(datapathVersion(relinked));
        expect(readPinnedVersion(join(pinDir, 'maps'))).toBe(datapathVersion(relinked));
        const after = { from: progId(join(pinDir, 'progs', 'from_pod')), to: progId(join(pinDir, 'progs', 'to_pod')) };
        expect(after.from).not.toBe(before.from);
        expect(linkProgId(join(links, `${veth}a_ingress`))).toBe(after.from);
        expect(linkProgId(join(links, `${veth}a_egress`))).toBe(after.to);
        expect(d.maps.config.lookup(Buffer.alloc(4))).toEqual(Buffer.alloc(d.maps.config.valueSize, 7));
      } finally {
        d.close();
      }
      // The same object again: nothing to replace.
      const again = loadDatapath({ pinDir, objectBytes: relinked });
      again.close();
      expect(again.replaced).toBeNull();
    } finally {
      execFileSync('ip', ['link', 'del', `${veth}a`]);
    }
  });

  it('refuses an object whose map layout changed, naming the map, and leaves every pin as it was', () => {
    const pinned = readPinnedVersion(join(pinDir, 'maps'));
    const before = readdirSync(join(pinDir, 'maps')).sort();
    let error: unknown;
    try {
      loadDatapath({ pinDir, objectBytes: resized }).close();
    } catch (err: unknown) {
      error = err;
    }
    expect(error).toBeInstanceOf(DatapathLayoutError);
    expect((error as Error).message).toMatch(/map fragments: key layout changed \(44 bytes pinned, 48 wanted\)/);
    expect((error as Error).message).toMatch(/Nothing was changed/);
    expect(readdirSync(join(pinDir, 'maps')).sort()).toEqual(before);
    expect(readPinnedVersion(join(pinDir, 'maps'))).toBe(pinned);
  });
});

/**
 * An upgrade to a datapath that adds a map, and the downgrade to one that
 * lacks a map the pins have (issue 33), against the real kernel. Pins made
 * by a version without one of this object's maps are played by a datapath
 * whose pin of that map is removed. The new object must load with the map
 * and switch every veth's links to its programs, as for any other version;
 * before, the missing pin made the agent load and pin afresh and leave the
 * links on the old programs while the pins named the new version.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLinkInfo, readMapInfo, readProgramId } from '../datapath/bpf-info.ts';
import { closeFd, mapLookupElem, mapUpdateElem, objGet } from '../datapath/libbpf.ts';
import { loadDatapath } from '../datapath/loader.ts';
import { datapathVersion, readPinnedVersion } from '../datapath/pin-version.ts';
import { attachTcx } from '../datapath/tcx.ts';
import { withMakefileBuild } from './support/bpf-build.ts';

const TAG = randomBytes(3).toString('hex');
/** A map of the datapath the test removes from the pins (any would do; this one the agent does not open). */
const ADDED_MAP = 'lb_nat_affinity';

function withPinned<T>(path: string, use: (fd: number) => T): T {
  const fd = objGet(path);
  try {
    return use(fd);
  } finally {
    closeFd(fd);
  }
}

describe('datapath pins of a version with fewer maps', () => {
  const pinDir = `/sys/fs/bpf/up33-newmap-${TAG}`;
  const mapsDir = join(pinDir, 'maps');
  const links = join(pinDir, 'links');
  const veth = `up33n${TAG}`;
  let normal: Buffer;
  let variant: Buffer;

  beforeAll(() => {
    normal = withMakefileBuild((p) => readFileSync(p));
    variant = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_TEST_VARIANT=1 -gdwarf-4');
    execFileSync('ip', ['link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`]);
  }, 240_000);
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

  it('starts from a datapath with a veth attached and a conntrack entry', () => {
    loadDatapath({ pinDir, objectBytes: normal }).close();
    const ifindex = Number(readFileSync(`/sys/class/net/${veth}a/ifindex`, 'utf8'));
    attachTcx({ ifindex, progPinPath: join(pinDir, 'progs', 'from_pod'), direction: 'ingress', linkPinPath: join(links, `${veth}a_ingress`) });
    attachTcx({ ifindex, progPinPath: join(pinDir, 'progs', 'to_pod'), direction: 'egress', linkPinPath: join(links, `${veth}a_egress`) });
  });

  for (const [direction, target] of [['upgrade', () => variant], ['downgrade', () => normal]] as const) {
    it(`${direction}: loads the map it lacks, keeps the others and their entries, and switches every link to its programs`, () => {
      const objectBytes = target();
      const from = readPinnedVersion(mapsDir);
      expect(from).not.toBe(datapathVersion(objectBytes));
      const ct = withPinned(join(mapsDir, 'conntrack'), (fd) => readMapInfo(fd, 'conntrack'));
      const key = randomBytes(ct.keySize);
      const value = randomBytes(ct.valueSize);
      withPinned(join(mapsDir, 'conntrack'), (fd) => mapUpdateElem(fd, key, value, 0, 'conntrack'));
      const oldLinks = [linkProgId(join(links, `${veth}a_ingress`)), linkProgId(join(links, `${veth}a_egress`))];
      unlinkSync(join(mapsDir, ADDED_MAP)); // pins of a version without it

      const d = loadDatapath({ pinDir, objectBytes });
      d.close();
      expect(d.runningVersion).toBe(datapathVersion(objectBytes));
      expect(d.replaced).toEqual({ from, links: 2, failed: [], migrated: [] });
      expect(existsSync(join(mapsDir, ADDED_MAP))).toBe(true);
      expect(withPinned(join(mapsDir, 'conntrack'), (fd) => readMapInfo(fd, 'conntrack').id)).toBe(ct.id); // kept, not made again
      const read = Buffer.alloc(ct.valueSize);
      expect(withPinned(join(mapsDir, 'conntrack'), (fd) => mapLookupElem(fd, key, read, 'conntrack'))).toBe(true);
      expect(read).toEqual(value);
      const newLinks = [linkProgId(join(links, `${veth}a_ingress`)), linkProgId(join(links, `${veth}a_egress`))];
      expect(newLinks).toEqual([progId(join(pinDir, 'progs', 'from_pod')), progId(join(pinDir, 'progs', 'to_pod'))]);
      expect(newLinks[0]).not.toBe(oldLinks[0]);
      expect(newLinks[1]).not.toBe(oldLinks[1]);
      expect(readPinnedVersion(mapsDir)).toBe(datapathVersion(objectBytes));
      expect(readPinnedVersion(join(pinDir, 'progs'))).toBe(datapathVersion(objectBytes));
    });
  }
});

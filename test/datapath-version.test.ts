/**
 * The pins say what they are (issue 33, step 1), against the real kernel:
 * a load records its object's version beside its maps; the same object
 * adopts them; an object with the same layouts adopts them and says which
 * version runs; an object whose map layout changed (a fragment table of
 * another size, behind a build flag) is refused with the map named, and
 * nothing pinned is removed or changed.
 */
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDatapath, removeDatapath } from '../datapath/loader.ts';
import { DatapathLayoutError, datapathVersion, readPinnedVersion } from '../datapath/pin-version.ts';
import { withMakefileBuild } from './support/bpf-build.ts';

describe('datapath pins: version and layouts', () => {
  const pinDir = `/sys/fs/bpf/sluice-test-version-${randomBytes(3).toString('hex')}`;
  let normal: Buffer;
  let resized: Buffer;
  let relinked: Buffer;

  beforeAll(() => {
    normal = withMakefileBuild((p) => readFileSync(p));
    resized = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_MAX_FRAGMENTS=131000');
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

  it('adopts pins of another object with the same layouts, and says which version runs', () => {
    expect(datapathVersion(relinked)).not.toBe(datapathVersion(normal));
    const d = loadDatapath({ pinDir, objectBytes: relinked });
    d.close();
    expect(d.adopted).toBe(true);
    expect(d.version).toBe(datapathVersion(relinked));
    expect(d.runningVersion).toBe(datapathVersion(normal));
  });

  it('refuses an object whose map layout changed, naming the map, and leaves every pin as it was', () => {
    const before = readdirSync(join(pinDir, 'maps')).sort();
    let error: unknown;
    try {
      loadDatapath({ pinDir, objectBytes: resized }).close();
    } catch (err: unknown) {
      error = err;
    }
    expect(error).toBeInstanceOf(DatapathLayoutError);
    expect((error as Error).message).toMatch(/map fragments: max entries 131072 pinned, 131000 in this agent's datapath/);
    expect((error as Error).message).toMatch(/Nothing was changed/);
    expect(readdirSync(join(pinDir, 'maps')).sort()).toEqual(before);
    expect(readPinnedVersion(join(pinDir, 'maps'))).toBe(datapathVersion(normal));
    // And the object it refused loads fine where nothing is pinned.
    const fresh = `${pinDir}-fresh`;
    try {
      loadDatapath({ pinDir: fresh, objectBytes: resized }).close();
    } finally {
      removeDatapath(fresh);
    }
  });
});

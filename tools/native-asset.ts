/**
 * Loads a native addon that travels inside a Node single executable.
 *
 * process.dlopen needs a file, so the addon is written once to a root-only,
 * content-addressed cache and re-used by every later run: the file name carries
 * the build-time hash, so a run that finds the file skips reading the asset.
 */
import fs from 'node:fs';
import sea from 'node:sea';

const CACHE_DIR_DEFAULT = '/var/cache/sluice';

/** Returns the exports of the addon stored as SEA asset `assetName`; throws when it cannot be written or loaded. */
export function loadNativeAsset(assetName: string): unknown {
  const dir = process.env.SLUICE_CACHE_DIR || CACHE_DIR_DEFAULT;
  const file = `${dir}/${assetName}`;
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, new Uint8Array(sea.getAsset(assetName)), { mode: 0o500 });
    fs.renameSync(tmp, file);
  }
  const mod = { exports: {} as unknown };
  process.dlopen(mod, file);
  return mod.exports;
}

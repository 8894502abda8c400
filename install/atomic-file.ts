/**
 * Writing a file that others may read or execute while it changes (the CNI
 * plugin kubelet runs, the conflist the runtime reads): the new contents go to
 * a temp file in the same directory, are fsync'ed, get their mode, and are
 * renamed over the target, then the directory is fsync'ed. A reader sees the
 * old file or the new one, never part of one, also when the writer is killed
 * in the middle: what a killed writer leaves is a temp file, which the next
 * write of the same target removes.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * A debug knob for the crash test: with SLUICE_INSTALL_CRASH=before-rename in
 * its environment, the writer kills itself (SIGKILL, nothing cleaned up) after
 * the temp file is written and before the rename.
 */
export const CRASH_ENV = 'SLUICE_INSTALL_CRASH';

const TMP_SUFFIX = '.tmp';

/** The prefix of every temp file written for `file`: hidden, beside it. */
function tmpPrefix(file: string): string {
  return `.${path.basename(file)}.sluice-`;
}

/** Removes temp files a killed writer left for `file`; returns their names. */
export function removeStaleTemps(file: string): string[] {
  const dir = path.dirname(file);
  const prefix = tmpPrefix(file);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const stale = names.filter((n) => n.startsWith(prefix) && n.endsWith(TMP_SUFFIX));
  for (const n of stale) fs.rmSync(path.join(dir, n), { force: true });
  return stale;
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a file atomically with `mode` (umask does not apply); true when the contents or mode changed. Throws with nothing left behind. */
export function writeFileAtomic(file: string, contents: string | Uint8Array, mode = 0o644): boolean {
  const data = typeof contents === 'string' ? Buffer.from(contents) : contents;
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  removeStaleTemps(file);
  try {
    const st = fs.statSync(file);
    if ((st.mode & 0o7777) === mode && Buffer.compare(fs.readFileSync(file), data) === 0) return false;
  } catch {
    // absent or unreadable: write it
  }
  // Another writer of the same target may remove our temp file as stale before
  // we rename it (a rare race): write it again.
  for (let attempt = 1; ; attempt++) {
    try {
      writeTempAndRename(file, data, mode);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 3) throw err;
    }
  }
  // The rename itself survives a power cut only once the directory is on disk.
  fsyncDir(dir);
  return true;
}

function writeTempAndRename(file: string, data: Uint8Array, mode: number): void {
  // A random name, created exclusively: two writers (the init container and the
  // agent, each pid 1 in its own container) never share a temp file.
  const tmp = path.join(path.dirname(file), `${tmpPrefix(file)}${crypto.randomBytes(6).toString('hex')}${TMP_SUFFIX}`);
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    try {
      for (let off = 0; off < data.length; ) off += fs.writeSync(fd, data, off);
      fs.fchmodSync(fd, mode);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (process.env[CRASH_ENV] === 'before-rename') process.kill(process.pid, 'SIGKILL');
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

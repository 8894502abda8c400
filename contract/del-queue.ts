/**
 * The DEL queue: when CNI DEL cannot reach the agent it still removes the veth
 * (which needs no agent), and leaves one small JSON file per attachment in a
 * directory on disk so the agent releases the rest (endpoint, addresses,
 * pinned links) when it is back. Kept light (node:fs, node:crypto): the CNI
 * plugin imports it.
 */
import { sha256Hex } from '../lib/sha256-hex.ts';
import fs from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../lib/errors.ts';

/** The queue directory when the CNI configuration names none: inside the agent's default state directory. */
export const DEFAULT_DEL_QUEUE_DIR = '/var/lib/sluice/del-queue';

/** Name of the queue directory inside an agent's state directory. */
export const DEL_QUEUE_SUBDIR = 'del-queue';

const ENTRY_SUFFIX = '.json';

/** One DEL the agent has yet to carry out. */
export interface QueuedDel {
  containerID: string;
  ifname: string;
  /** The host veth the attachment used (its TCX link pins are named after it). */
  hostIfname: string;
  /** Milliseconds since the epoch when the DEL was queued. */
  queuedAt: number;
}

/** The file of an attachment's entry: a hash of the key, so no key can name a path outside the queue. */
function entryFile(dir: string, containerID: string, ifname: string): string {
  const hash = sha256Hex(`${containerID}/${ifname}`).slice(0, 32);
  return path.join(dir, hash + ENTRY_SUFFIX);
}

/** Writes (atomically: temporary file + rename) the entry for one attachment; returns its path. Throws on I/O errors. */
export function queueDel(dir: string, entry: QueuedDel): string {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = entryFile(dir, entry.containerID, entry.ifname);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(entry) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}

/** Removes the entry of one attachment, if any (a later successful release makes it moot). */
export function unqueueDel(dir: string, containerID: string, ifname: string): void {
  fs.rmSync(entryFile(dir, containerID, ifname), { force: true });
}

/** Every queued DEL with its file; unreadable or malformed files are skipped (and reported through `onBad`). */
export function listQueuedDels(dir: string, onBad: (file: string, why: string) => void = () => {}): { file: string; entry: QueuedDel }[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: { file: string; entry: QueuedDel }[] = [];
  for (const name of names.filter((n) => n.endsWith(ENTRY_SUFFIX)).sort()) {
    const file = path.join(dir, name);
    try {
      const e = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<QueuedDel>;
      if (typeof e.containerID !== 'string' || typeof e.ifname !== 'string' || typeof e.hostIfname !== 'string') {
        onBad(file, 'missing containerID, ifname or hostIfname');
        continue;
      }
      out.push({ file, entry: { containerID: e.containerID, ifname: e.ifname, hostIfname: e.hostIfname, queuedAt: Number(e.queuedAt ?? 0) } });
    } catch (err: unknown) {
      onBad(file, errorMessage(err));
    }
  }
  return out;
}

/**
 * Carries out every queued DEL with `release` (the agent's unregister +
 * release + unpin), removing each entry once it succeeded; an entry whose
 * release throws stays for the next drain. Returns how many were done.
 */
export function drainDelQueue(dir: string, release: (entry: QueuedDel) => void, log: (msg: string) => void): number {
  let done = 0;
  for (const { file, entry } of listQueuedDels(dir, (f, why) => log(`DEL queue: skipping ${f}: ${why}`))) {
    try {
      release(entry);
      fs.rmSync(file, { force: true });
      done++;
      log(`DEL queue: released ${entry.containerID}/${entry.ifname} (queued ${new Date(entry.queuedAt).toISOString()} while the agent was down)`);
    } catch (err: unknown) {
      log(`DEL queue: release of ${entry.containerID}/${entry.ifname} failed, will retry: ${errorMessage(err)}`);
    }
  }
  return done;
}

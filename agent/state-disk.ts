/**
 * The agent's state directory as a disk that can fill up, turn read-only or
 * fail. Its SQLite stores (IPAM, endpoints, numbering) write there; when a
 * write is refused the agent must keep serving what needs no disk (DEL, the
 * datapath, status) and refuse what does with a "try again" error, not crash
 * or freeze. This module tells disk faults from other errors, keeps the
 * writes that must not be lost (a DEL's row deletion and release) until the
 * disk takes them, and probes the directory so that the node recovers by
 * itself once the disk is back.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ApiFailure } from './api/server.ts';
import { errorMessage } from '../lib/errors.ts';

/** SQLite primary result codes that mean the disk (not the query) failed. */
const SQLITE_DISK_CODES: Record<number, string> = {
  8: 'read-only', // SQLITE_READONLY
  10: 'I/O error', // SQLITE_IOERR
  13: 'full', // SQLITE_FULL
  14: 'cannot open its files', // SQLITE_CANTOPEN
};
/** errno codes of the same faults from plain file writes. */
const ERRNO_DISK_CODES: Record<string, string> = { ENOSPC: 'full', EDQUOT: 'over quota', EROFS: 'read-only', EIO: 'I/O error' };

const PROBE_FILE = '.write-probe';
const PROBE_BYTES = Buffer.alloc(512, 0x5a);

/** What kind of disk fault err is ('full', 'read-only', ...), or null when it is not one. */
export function diskFaultOf(err: unknown): string | null {
  if (typeof err !== 'object' || err === null) return null;
  const e = err as { code?: unknown; errcode?: unknown };
  if (e.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number') return SQLITE_DISK_CODES[e.errcode & 0xff] ?? null;
  if (typeof e.code === 'string') return ERRNO_DISK_CODES[e.code] ?? null;
  return null;
}

/** A write kept for when the disk takes it again. */
interface DeferredWrite {
  what: string;
  run: () => void;
}

/** The state directory's health, the writes it owes, and the probe that brings it back. */
export class StateDisk {
  readonly dir: string;
  private readonly log: (msg: string) => void;
  private faultText: string | null = null;
  private faultSinceMs = 0;
  private readonly deferred: DeferredWrite[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly stores: { name: string; reopen: () => void }[] = [];

  constructor(dir: string, log: (msg: string) => void) {
    this.dir = dir;
    this.log = log;
  }

  /** Why the state directory does not take writes now (null: it does), with the writes still owed. */
  get fault(): string | null {
    if (this.faultText === null) return null;
    const owed = this.deferred.length > 0 ? `; ${this.deferred.length} write(s) kept until it does` : '';
    return `the state directory ${this.dir} refuses writes (${this.faultText}) since ${new Date(this.faultSinceMs).toISOString()}${owed}`;
  }

  /**
   * A store to reopen when the disk is back: a disk that went read-only on
   * errors comes back as a new mount, and the handles still open point at the
   * old one.
   */
  addStore(name: string, reopen: () => void): void {
    this.stores.push({ name, reopen });
  }

  /** Records err if it is a disk fault; returns whether it was one. */
  noteFailure(err: unknown): boolean {
    const kind = diskFaultOf(err);
    if (kind === null) return false;
    const text = `${kind}: ${errorMessage(err)}`;
    if (this.faultText === null) {
      this.faultSinceMs = Date.now();
      this.log(`state directory ${this.dir} refuses writes (${text}): ADDs are refused with "try again", DELs keep working`);
    }
    this.faultText = text;
    return true;
  }

  /** The API's answer to a disk fault: 503 TryAgain (CNI code 11); null for any other error. */
  apiFailure(err: unknown): ApiFailure | null {
    if (!this.noteFailure(err)) return null;
    return new ApiFailure(503, 'TryAgain', `${this.fault}; try again once it has room`);
  }

  /** Throws the API's TryAgain while the disk is faulty: an ADD then fails before it has changed anything. */
  requireWritable(): void {
    const fault = this.fault;
    if (fault !== null) throw new ApiFailure(503, 'TryAgain', `${fault}; try again once it has room`);
  }

  /**
   * Runs write; when the disk refuses it, keeps it for the probe to run once
   * the disk is back and returns false. Other errors are thrown.
   */
  writeOrDefer(what: string, write: () => void): boolean {
    try {
      write();
      return true;
    } catch (err: unknown) {
      if (!this.noteFailure(err)) throw err;
      this.deferred.push({ what, run: write });
      this.log(`${what}: kept until the state directory takes writes again`);
      return false;
    }
  }

  /**
   * One probe: a small file written, synced and removed, then the owed writes
   * in order. Clears the fault only when all of them went through.
   */
  probe(): boolean {
    const file = path.join(this.dir, PROBE_FILE);
    try {
      const fd = fs.openSync(file, 'w', 0o600);
      try {
        fs.writeSync(fd, PROBE_BYTES);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.unlinkSync(file);
      if (this.faultText !== null) for (const store of this.stores) store.reopen();
      while (this.deferred.length > 0) {
        this.deferred[0]!.run();
        this.deferred.shift();
      }
    } catch (err: unknown) {
      try {
        fs.rmSync(file, { force: true });
      } catch {
        // a read-only disk keeps it; the next probe overwrites it
      }
      if (!this.noteFailure(err)) this.log(`state directory probe: ${errorMessage(err)}`);
      return false;
    }
    if (this.faultText !== null) {
      this.log(`state directory ${this.dir} takes writes again after ${Math.round((Date.now() - this.faultSinceMs) / 1000)} s`);
      this.faultText = null;
    }
    return true;
  }

  /** Probes every intervalMs until stop(). */
  start(intervalMs: number): void {
    this.timer = setInterval(() => this.probe(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

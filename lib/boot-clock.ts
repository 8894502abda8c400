/**
 * The clock grace periods are measured on: CLOCK_BOOTTIME, tagged with the
 * boot it belongs to.
 *
 * Not the wall clock (Date.now()): NTP or a VM's resume steps it by minutes
 * or hours, which makes a fresh allocation look old (released early) or an
 * old one new (held until the clock catches up). Not CLOCK_MONOTONIC
 * (process.hrtime, performance.now()): it stops while the machine is
 * suspended, and a stored value must be read by the next agent process, so
 * it needs a clock of the machine, not of the process. CLOCK_BOOTTIME is
 * the kernel's monotonic clock plus time suspended. Node has no
 * clock_gettime(CLOCK_BOOTTIME) of its own: it is called in libc through
 * koffi (0.2 µs a reading; every allocation takes one), else read from
 * /proc/uptime, which prints the same clock (fs/proc/uptime.c reads
 * ktime_get_boottime) in 10 ms steps (about 40 µs a reading: open, read, close).
 * It starts again at 0 on every boot, so each reading carries the boot id
 * (/proc/sys/kernel/random/boot_id, new on every boot): a reading from an
 * earlier boot is older than any grace period, whatever its number.
 */
import fs from 'node:fs';
import koffi from 'koffi';

const UPTIME_FILE = '/proc/uptime';
const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';
/** CLOCK_BOOTTIME of <linux/time.h>. */
const CLOCK_BOOTTIME = 7;
/** struct timespec on 64-bit Linux: tv_sec, tv_nsec. */
const TIMESPEC_BYTES = 16;

/** A moment on the boot-time clock: which boot, and milliseconds since it began (time suspended included). */
export interface BootTime {
  bootId: string;
  ms: number;
}

/** Where grace periods read the time; injected in tests. */
export interface BootClock {
  now(): BootTime;
}

let bootId: string | undefined;
/** libc's clock_gettime, null when it cannot be called (then /proc/uptime); undefined until first used. */
let clockGettime: ((clock: number, timespec: Buffer) => number) | null | undefined;
const timespec = Buffer.alloc(TIMESPEC_BYTES);

/** Milliseconds on CLOCK_BOOTTIME. */
function bootTimeMs(): number {
  if (clockGettime === undefined) {
    try {
      clockGettime = koffi.load('libc.so.6').func('int clock_gettime(int clock, void *timespec)') as (clock: number, timespec: Buffer) => number;
    } catch {
      clockGettime = null;
    }
  }
  if (clockGettime !== null && process.arch !== 'ia32' && clockGettime(CLOCK_BOOTTIME, timespec) === 0) {
    return Number(timespec.readBigInt64LE(0)) * 1000 + Math.floor(Number(timespec.readBigInt64LE(8)) / 1e6);
  }
  const seconds = Number(fs.readFileSync(UPTIME_FILE, 'utf8').split(' ')[0]);
  if (!Number.isFinite(seconds)) throw new Error(`read the boot-time clock: ${UPTIME_FILE} does not start with a number of seconds`);
  return Math.round(seconds * 1000);
}

/** The machine's boot-time clock. */
export const systemBootClock: BootClock = {
  now(): BootTime {
    bootId ??= fs.readFileSync(BOOT_ID_FILE, 'utf8').trim();
    return { bootId, ms: bootTimeMs() };
  },
};

/**
 * Milliseconds from `earlier` to `later`: Infinity when `earlier` belongs to
 * another boot (the machine has rebooted since), never negative.
 */
export function elapsedMs(earlier: BootTime, later: BootTime): number {
  if (earlier.bootId !== later.bootId) return Infinity;
  return Math.max(0, later.ms - earlier.ms);
}

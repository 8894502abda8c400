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
 * the kernel's monotonic clock plus time suspended; /proc/uptime prints it
 * (fs/proc/uptime.c reads ktime_get_boottime), in 10 ms steps, far below any
 * grace period, and Node has no clock_gettime(CLOCK_BOOTTIME) of its own.
 * It starts again at 0 on every boot, so each reading carries the boot id
 * (/proc/sys/kernel/random/boot_id, new on every boot): a reading from an
 * earlier boot is older than any grace period, whatever its number.
 */
import fs from 'node:fs';

const UPTIME_FILE = '/proc/uptime';
const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

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

/** The machine's boot-time clock. */
export const systemBootClock: BootClock = {
  now(): BootTime {
    bootId ??= fs.readFileSync(BOOT_ID_FILE, 'utf8').trim();
    const seconds = Number(fs.readFileSync(UPTIME_FILE, 'utf8').split(' ')[0]);
    if (!Number.isFinite(seconds)) throw new Error(`read the boot-time clock: ${UPTIME_FILE} does not start with a number of seconds`);
    return { bootId, ms: Math.round(seconds * 1000) };
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

/**
 * Numbers reserved ahead, in a small file beside numbering.db: whenever the
 * numbering hands out a number at or above its reservation, it first moves
 * the reservation RESERVE_BLOCK numbers on (one atomic write per block, not
 * per number). When numbering.db is lost, its rebuild starts above the
 * reservation too, not only above the numbers the maps still hold: so no
 * number it ever handed out is handed out again, even one no map names any
 * more (flow records, logs and people may still name it).
 */
import fs from 'node:fs';
import { writeFileAtomic } from '../../install/atomic-file.ts';

/** How far ahead numbers are reserved: out of 16.7 million identities, a rebuild skips at most this many. */
export const RESERVE_BLOCK = 1024;

/** Below these, every number may have been handed out. */
export interface Reservation {
  identity: number;
  selector: number;
}

/** The reservation in file; null when there is none or it cannot be read (the rebuild then relies on the maps). */
export function readReservation(file: string): Reservation | null {
  try {
    const r = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Reservation>;
    if (Number.isSafeInteger(r.identity) && Number.isSafeInteger(r.selector)) return { identity: r.identity!, selector: r.selector! };
  } catch {
    // absent or damaged
  }
  return null;
}

/** Writes the reservation atomically (temp file, fsync, rename); throws what the disk throws. */
export function writeReservation(file: string, r: Reservation): void {
  writeFileAtomic(file, `${JSON.stringify(r)}\n`, 0o600);
}

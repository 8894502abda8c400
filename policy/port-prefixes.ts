/**
 * Port ranges as prefixes over the 16-bit port, for the LPM policy map: a
 * range [lo, hi] becomes at most 30 aligned blocks. Pure.
 */

const PORT_BITS = 16;

/** An aligned block of ports: the first `prefixLength` bits of `port`. */
export interface PortPrefix {
  port: number;
  prefixLength: number;
}

/** Splits [lo, hi] (inclusive, 0..65535) into the fewest aligned blocks. */
export function portRangePrefixes(lo: number, hi: number): PortPrefix[] {
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > 0xffff || lo > hi) {
    throw new Error(`invalid port range ${lo}-${hi}`);
  }
  const out: PortPrefix[] = [];
  let start = lo;
  while (start <= hi) {
    // The largest block that starts at `start` (aligned) and ends within hi.
    let size = start === 0 ? 1 << PORT_BITS : start & -start;
    while (start + size - 1 > hi) size >>= 1;
    out.push({ port: start, prefixLength: PORT_BITS - Math.log2(size) });
    start += size;
  }
  return out;
}

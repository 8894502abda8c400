/**
 * Fill levels of the datapath's maps for metrics and status: entries counted
 * by walking the keys (bpf_map_get_next_key, two reused buffers, no
 * allocation per key) up to a limit, in chunks that let the event loop serve
 * CNI requests in between, and max_entries from the kernel's map info, read
 * once.
 */
import type { BpfMap } from '../../datapath/bpf-map.ts';
import { readMapInfo } from '../../datapath/bpf-info.ts';
import { mapGetNextKey } from '../../datapath/libbpf.ts';

/**
 * Keys counted per map at most: a key costs about 3 µs, so a full map costs
 * about 200 ms of syscalls. Conntrack (262,144 entries) or a huge policy map
 * stop here and say `truncated`: their count is a lower bound.
 */
export const MAP_COUNT_LIMIT = 65536;
/** Keys walked between two turns of the event loop (about 12 ms). */
const MAP_COUNT_CHUNK = 4096;

/** The maps whose fill is reported, in display order. */
export const FILL_MAPS = ['endpoints', 'ipcache', 'policy', 'cidr_policy', 'conntrack', 'fragments'] as const;

/** One map's fill. */
export interface MapFill {
  name: string;
  /** Keys counted; a lower bound when truncated. */
  entries: number;
  maxEntries: number;
  /** True when counting stopped at MAP_COUNT_LIMIT. */
  truncated: boolean;
}

/** max_entries of an open map; throws BpfError when the kernel refuses the info. */
export function maxEntriesOf(map: BpfMap): number {
  return readMapInfo(map.fd, `map ${map.name}`).maxEntries;
}

/**
 * Counts a map's keys, stopping at limit. A walk of a map that changes under
 * it (LRU evictions in conntrack) may restart from the first key; the limit
 * bounds that too.
 */
export async function countEntries(map: BpfMap, limit = MAP_COUNT_LIMIT): Promise<{ entries: number; truncated: boolean }> {
  let prev = Buffer.alloc(map.keySize);
  let next = Buffer.alloc(map.keySize);
  let entries = 0;
  let first = true;
  while (entries < limit) {
    if (!mapGetNextKey(map.fd, first ? null : prev, next, `map ${map.name}`)) return { entries, truncated: false };
    first = false;
    entries++;
    [prev, next] = [next, prev];
    if (entries % MAP_COUNT_CHUNK === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  // At the limit: truncated only if there is one more key.
  return { entries, truncated: mapGetNextKey(map.fd, prev, next, `map ${map.name}`) };
}

/** Reads the fill of a fixed set of maps. */
export class MapFillReader {
  private readonly maps: { name: string; map: BpfMap; maxEntries: number }[];

  /** Reads every map's max_entries now; throws BpfError on a map the kernel will not describe. */
  constructor(maps: Record<(typeof FILL_MAPS)[number], BpfMap>) {
    this.maps = FILL_MAPS.map((name) => ({ name, map: maps[name], maxEntries: maxEntriesOf(maps[name]) }));
  }

  /** Counts every map's entries now, one map after the other. */
  async read(): Promise<MapFill[]> {
    const out: MapFill[] = [];
    for (const { name, map, maxEntries } of this.maps) out.push({ name, maxEntries, ...(await countEntries(map)) });
    return out;
  }
}

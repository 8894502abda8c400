/**
 * A snapshot of a map's entries as the kernel handed them over (blocks of
 * keys and values back to back), found by key without a Buffer per entry:
 * a migration keeps the first copy of conntrack's hundreds of thousands of
 * entries for its catch-up (map-catch-up.ts), and a Buffer and a hex string
 * per entry cost it seconds.
 */

/** Entries read together: count keys and values, back to back. */
export interface Chunk {
  keys: Buffer;
  values: Buffer;
  count: number;
}

/** Entries a block may hold: a location is block * BLOCK_ENTRIES + index (a trie's walk is one block of all its keys). */
const BLOCK_ENTRIES = 1 << 24;

/** Entries of one map, each found by its key (as a latin1 string) at a location (a number). */
export class EntrySet {
  readonly keySize: number;
  /** Bytes of a value: every CPU's slot for a per-CPU map. */
  readonly valueBytes: number;
  private readonly blocks: Chunk[] = [];
  /** Built at the first look-up, not while the copy runs (the migration window). */
  private index: Map<string, number> | null = null;

  constructor(keySize: number, valueBytes: number) {
    this.keySize = keySize;
    this.valueBytes = valueBytes;
  }

  /** Adds a block of entries (kept as it is, not copied); a key seen before moves to the later block. */
  add(c: Chunk): void {
    if (c.count === 0) return;
    if (c.count > BLOCK_ENTRIES) throw new Error(`a block of ${c.count} entries is more than ${BLOCK_ENTRIES}`);
    this.blocks.push(c);
    this.index = null;
  }

  get size(): number {
    return this.where().size;
  }

  /** Where the entry of key (keyString) is, or undefined. */
  find(key: string): number | undefined {
    return this.where().get(key);
  }

  /** Every entry: its key (keyString) and where it is. */
  entries(): IterableIterator<[string, number]> {
    return this.where().entries();
  }

  private where(): Map<string, number> {
    if (this.index) return this.index;
    const index = new Map<string, number>();
    this.blocks.forEach((c, block) => {
      for (let i = 0; i < c.count; i++) index.set(keyString(c, i, this.keySize), block * BLOCK_ENTRIES + i);
    });
    this.index = index;
    return index;
  }

  /** The value at a location (a view, not a copy). */
  value(at: number): Buffer {
    const [c, i] = this.locate(at);
    return c.values.subarray(i * this.valueBytes, (i + 1) * this.valueBytes);
  }

  /** True when the value at `at` equals the valueBytes of `other` from otherStart. */
  sameValue(at: number, other: Buffer, otherStart: number): boolean {
    const [c, i] = this.locate(at);
    return other.compare(c.values, i * this.valueBytes, (i + 1) * this.valueBytes, otherStart, otherStart + this.valueBytes) === 0;
  }

  private locate(at: number): [Chunk, number] {
    return [this.blocks[Math.floor(at / BLOCK_ENTRIES)]!, at % BLOCK_ENTRIES];
  }
}

/** The key of entry i of a chunk as a string (latin1: one char per byte), for Map lookups. */
export function keyString(c: Chunk, i: number, keySize: number): string {
  return c.keys.toString('latin1', i * keySize, (i + 1) * keySize);
}

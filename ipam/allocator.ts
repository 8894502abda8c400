/**
 * Hands out pod addresses from the node's pools, one per pool (one per family
 * when dual stack), idempotently per (container ID, ifname).
 *
 * Reuse order, per pool: first every address never handed out (a frontier
 * walks the pool upwards), then released addresses in release order, the one
 * released longest ago first, so a just-released address comes back as late
 * as the pool allows. Frontier, free list and allocations change in the same
 * transaction, so a crash cannot leave them disagreeing.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { bigIntToIp, ipToBigInt, parseAddressRange } from '../lib/cidr.ts';
import { makePool, nextAllocatable, notAllocatable, offsetOf, poolCapacity, type NotAllocatableReason, type Pool } from './pool.ts';
import { validatePodCIDRs } from './pod-cidrs.ts';
import { systemBootClock, type BootClock } from '../lib/boot-clock.ts';
import { closeQuietly, inTransaction, ipKey, ipKeyOfText, openIpamStore, toRecord, type AllocationKey, type AllocationRecord, type SynchronousMode } from './store.ts';

/**
 * Released addresses remembered for reuse order. A pool of up to this many
 * addresses keeps its exact order; beyond it the oldest entries are dropped,
 * which only matters once the frontier has swept a pool larger than this.
 */
const MAX_RELEASED_ROWS = 65_536;

/** Thrown when a pool has no free address; the CNI turns it into "try again later". */
export class PoolExhaustedError extends Error {
  readonly pool: string;
  constructor(pool: string, capacity: bigint) {
    super(`allocate in pod CIDR ${pool}: exhausted, all ${capacity} assignable addresses are allocated (delete pods, or give the node a larger pod CIDR)`);
    this.name = 'PoolExhaustedError';
    this.pool = pool;
  }
}

/**
 * Thrown by allocate while the IPAM refuses to hand out addresses (a damaged
 * store it could not rebuild safely); the API answers "try again later".
 */
export class IpamRefusedError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'IpamRefusedError';
  }
}

/** An address the node shows in use, put back into the store by restore(). */
export interface RestoredAllocation {
  ip: string;
  containerID: string;
  ifname: string;
  namespace: string;
  pod: string;
  netns: string;
}

/** What restore() did: the addresses it put back, and those it could not (held by another attachment). */
export interface RestoreResult {
  placed: RestoredAllocation[];
  conflicts: (RestoredAllocation & { heldBy: string })[];
}

/** An address handed to a pod, with what the pod needs to route. */
export interface Allocation {
  ip: string;
  family: 4 | 6;
  prefixLength: number;
  gateway: string;
  pool: string;
}

/** Pool usage for status output. */
export interface PoolUsage {
  cidr: string;
  family: 4 | 6;
  /** Addresses the pool can hand out (network, gateway, broadcast and reserved excluded). */
  size: number;
  /** Of those, how many are allocated. */
  used: number;
  gateway: string;
  /** Reserved ranges from config that overlap the pool. */
  reserved: string[];
}

/** Why an allocation is no longer valid under the current pools. */
export type StaleReason = 'outside-pod-cidrs' | NotAllocatableReason;

/** An allocation the current configuration would not have made: reported, never silently kept or reused. */
export interface StaleAllocation extends AllocationRecord {
  reason: StaleReason;
}

/** Options of the IPAM beyond its pod CIDRs. */
export interface IpamOptions {
  /** Extra addresses never handed out: CIDRs, "first-last" ranges or single addresses. */
  reserved?: string[];
  synchronous?: SynchronousMode;
  /** The clock allocation times are stamped with for grace periods (default: the machine's boot-time clock). */
  clock?: BootClock;
}

/** The node's IPAM: pools plus the SQLite store behind them. */
export class Ipam {
  readonly pools: Pool[];
  /** The clock of allocation times: reconciliation measures grace periods on it. */
  readonly clock: BootClock;
  private readonly dbFile: string;
  private readonly synchronous: SynchronousMode | undefined;
  private db!: DatabaseSync;
  private stmts!: Record<string, StatementSync>;
  /** Why allocations are refused (null: they are not). */
  private refusalText: string | null = null;

  /** Opens the store and builds the pools; throws on a malformed CIDR or range, or two pools of one family. */
  constructor(dbFile: string, cidrs: string[], opts: IpamOptions = {}) {
    const reserved = (opts.reserved ?? []).map(parseAddressRange);
    this.pools = validatePodCIDRs(cidrs).map((c) => makePool(c, reserved));
    this.dbFile = dbFile;
    this.synchronous = opts.synchronous;
    this.clock = opts.clock ?? systemBootClock;
    this.open();
  }

  /** Closes and opens the store again: after its disk was remounted, the old handle still points at the dead one. */
  reopen(): void {
    closeQuietly(this.db);
    this.open();
  }

  private open(): void {
    this.db = openIpamStore(this.dbFile, this.synchronous, this.clock);
    this.stmts = {
      findInRange: this.db.prepare('SELECT ip FROM allocations WHERE container_id = ? AND ifname = ? AND ip_key BETWEEN ? AND ? LIMIT 1'),
      isUsed: this.db.prepare('SELECT 1 FROM allocations WHERE ip_key = ?'),
      holderOf: this.db.prepare('SELECT container_id, ifname FROM allocations WHERE ip_key = ?'),
      insertIfFree: this.db.prepare(
        'INSERT OR IGNORE INTO allocations (ip, ip_key, pool, container_id, ifname, namespace, pod, netns, created_at, created_boot_id, created_boot_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      isReleased: this.db.prepare('SELECT 1 FROM released WHERE ip_key = ?'),
      insert: this.db.prepare(
        'INSERT INTO allocations (ip, ip_key, pool, container_id, ifname, namespace, pod, netns, created_at, created_boot_id, created_boot_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      cursor: this.db.prepare('SELECT last_offset FROM pool_cursor WHERE pool = ?'),
      setCursor: this.db.prepare(
        'INSERT INTO pool_cursor (pool, last_offset) VALUES (?, ?) ON CONFLICT (pool) DO UPDATE SET last_offset = excluded.last_offset',
      ),
      releasedInRange: this.db.prepare('SELECT ip_key, ip FROM released WHERE ip_key BETWEEN ? AND ? ORDER BY seq'),
      forgetReleased: this.db.prepare('DELETE FROM released WHERE ip_key = ?'),
      remember: this.db.prepare('INSERT OR REPLACE INTO released (ip_key, ip, released_at) VALUES (?, ?, ?)'),
      pruneReleased: this.db.prepare('DELETE FROM released WHERE seq <= (SELECT MAX(seq) FROM released) - ?'),
      usedInRange: this.db.prepare('SELECT ip FROM allocations WHERE ip_key BETWEEN ? AND ? ORDER BY ip_key'),
      countInRange: this.db.prepare('SELECT COUNT(*) AS n FROM allocations WHERE ip_key BETWEEN ? AND ?'),
      release: this.db.prepare('DELETE FROM allocations WHERE container_id = ? AND ifname = ? RETURNING ip, ip_key'),
      list: this.db.prepare('SELECT * FROM allocations ORDER BY ip_key'),
      addressesOf: this.db.prepare('SELECT ip FROM allocations WHERE container_id = ? AND ifname = ? ORDER BY ip_key'),
    };
  }

  /** Why allocations are refused now, or null. */
  get refusal(): string | null {
    return this.refusalText;
  }

  /** Refuses every allocation with this reason from now on (null: serve them again); releases keep working. */
  refuse(reason: string | null): void {
    this.refusalText = reason;
  }

  /**
   * Puts back addresses the node shows in use (after the store was lost or
   * damaged), each under its attachment, in one transaction. An address the
   * store already holds for that attachment is left alone; one it holds for
   * another is a conflict, reported and not changed. Each pool's frontier moves
   * past the highest address put back, so fresh addresses come from above
   * what the node was using. Addresses outside every pool are put back too,
   * and then reported as stale like any other.
   */
  restore(entries: RestoredAllocation[]): RestoreResult {
    return inTransaction(this.db, () => {
      const result: RestoreResult = { placed: [], conflicts: [] };
      for (const e of entries) {
        const ipk = ipKeyOfText(e.ip);
        const holder = this.stmts.holderOf!.get(ipk) as { container_id: string; ifname: string } | undefined;
        if (holder) {
          if (holder.container_id !== e.containerID || holder.ifname !== e.ifname) {
            result.conflicts.push({ ...e, heldBy: `${holder.container_id}/${holder.ifname}` });
          }
          continue;
        }
        const value = ipToBigInt(e.ip);
        const pool = this.pools.find((p) => p.cidr.family === (e.ip.includes(':') ? 6 : 4) && offsetOf(p, value) !== null);
        const inserted = this.stmts.insertIfFree!.run(e.ip, ipk, pool?.cidr.text ?? '', e.containerID, e.ifname, e.namespace, e.pod, e.netns, Date.now(), ...this.bootStamp());
        if (Number(inserted.changes) === 0) {
          result.conflicts.push({ ...e, heldBy: `${e.containerID}/${e.ifname} (it holds another address of this pod CIDR)` });
          continue;
        }
        this.stmts.forgetReleased!.run(ipk);
        result.placed.push(e);
        if (pool) {
          const offset = offsetOf(pool, value)!;
          const row = this.stmts.cursor!.get(pool.cidr.text) as { last_offset: string } | undefined;
          if (!row || BigInt(row.last_offset) < offset) this.stmts.setCursor!.run(pool.cidr.text, offset.toString());
        }
      }
      return result;
    });
  }

  /** Returns the key's addresses, allocating in every pool where it holds none; all or nothing; throws PoolExhaustedError. */
  allocate(key: AllocationKey): Allocation[] {
    if (this.refusalText !== null) throw new IpamRefusedError(this.refusalText);
    return inTransaction(this.db, () => this.pools.map((pool) => this.allocateIn(pool, key)));
  }

  /** Releases every address the key holds (in any pool, stale ones included); returns them, empty when it held none. */
  release(key: Pick<AllocationKey, 'containerID' | 'ifname'>): string[] {
    return inTransaction(this.db, () => {
      const rows = this.stmts.release!.all(key.containerID, key.ifname);
      const now = Date.now();
      for (const row of rows) this.stmts.remember!.run(String(row.ip_key), String(row.ip), now);
      if (rows.length > 0) this.stmts.pruneReleased!.run(MAX_RELEASED_ROWS);
      return rows.map((row) => String(row.ip));
    });
  }

  /** The addresses one attachment holds (an index lookup, not a walk). */
  addressesOf(containerID: string, ifname: string): string[] {
    return this.stmts.addressesOf!.all(containerID, ifname).map((row) => String(row.ip));
  }

  /** Every allocation in the store, in address order. */
  list(): AllocationRecord[] {
    return this.stmts.list!.all().map((row) => toRecord(row as Record<string, unknown>));
  }

  /** Allocations outside every current pool, or on an address a pool may not hand out (e.g. newly reserved). */
  stale(): StaleAllocation[] {
    const out: StaleAllocation[] = [];
    for (const rec of this.list()) {
      const value = ipToBigInt(rec.ip);
      const family = rec.ip.includes(':') ? 6 : 4;
      const pool = this.pools.find((p) => p.cidr.family === family && offsetOf(p, value) !== null);
      const reason = pool ? notAllocatable(pool, offsetOf(pool, value)!) : 'outside-pod-cidrs';
      if (reason) out.push({ ...rec, reason });
    }
    return out;
  }

  /** Size and use of each pool; `used` counts only addresses the pool may hand out, so used === size means exhausted. */
  usage(): PoolUsage[] {
    return this.pools.map((pool) => {
      const count = (first: bigint, last: bigint): number =>
        first > last ? 0 : Number((this.stmts.countInRange!.get(this.key(pool, first), this.key(pool, last)) as { n: number }).n);
      let notAssignable = count(0n, pool.firstOffset - 1n) + count(pool.lastOffset + 1n, pool.cidr.size - 1n);
      for (const r of pool.reserved) notAssignable += count(r.first, r.last);
      return {
        cidr: pool.cidr.text,
        family: pool.cidr.family,
        size: Number(poolCapacity(pool)),
        used: count(0n, pool.cidr.size - 1n) - notAssignable,
        gateway: pool.gateway,
        reserved: pool.reservedText,
      };
    });
  }

  /** Closes the store. */
  close(): void {
    this.db.close();
  }

  /** The created_boot_id and created_boot_ms of a row made now. */
  private bootStamp(): [string, number] {
    const now = this.clock.now();
    return [now.bootId, now.ms];
  }

  private key(pool: Pool, offset: bigint): string {
    return ipKey(pool.cidr.family, pool.cidr.base + offset);
  }

  private allocateIn(pool: Pool, key: AllocationKey): Allocation {
    const existing = this.stmts.findInRange!.get(key.containerID, key.ifname, this.key(pool, 0n), this.key(pool, pool.cidr.size - 1n)) as
      | { ip: string }
      | undefined;
    if (existing) return this.describe(pool, existing.ip);
    const offset = this.fromFrontier(pool) ?? this.fromReleased(pool) ?? this.fromScan(pool);
    if (offset === null) throw new PoolExhaustedError(pool.cidr.text, poolCapacity(pool));
    const ip = bigIntToIp(pool.cidr.base + offset, pool.cidr.family);
    const ipk = this.key(pool, offset);
    this.stmts.forgetReleased!.run(ipk);
    this.stmts.insert!.run(ip, ipk, pool.cidr.text, key.containerID, key.ifname, key.namespace ?? '', key.pod ?? '', key.netns ?? '', Date.now(), ...this.bootStamp());
    return this.describe(pool, ip);
  }

  /** The next never-used address above the frontier, advancing it; null once the frontier has reached the end. */
  private fromFrontier(pool: Pool): bigint | null {
    const row = this.stmts.cursor!.get(pool.cidr.text) as { last_offset: string } | undefined;
    let offset = nextAllocatable(pool, row ? BigInt(row.last_offset) + 1n : pool.firstOffset);
    // Addresses above the frontier can still be taken (allocated under an earlier pod CIDR) or remembered as released.
    while (offset !== null && (this.stmts.isUsed!.get(this.key(pool, offset)) || this.stmts.isReleased!.get(this.key(pool, offset)))) {
      offset = nextAllocatable(pool, offset + 1n);
    }
    this.stmts.setCursor!.run(pool.cidr.text, (offset ?? pool.lastOffset).toString());
    return offset;
  }

  /** The free address released longest ago, or null. */
  private fromReleased(pool: Pool): bigint | null {
    for (const row of this.stmts.releasedInRange!.iterate(this.key(pool, 0n), this.key(pool, pool.cidr.size - 1n))) {
      const offset = offsetOf(pool, ipToBigInt(String(row.ip)))!;
      if (notAllocatable(pool, offset)) continue; // reserved now; kept in case the reservation goes away
      if (!this.stmts.isUsed!.get(String(row.ip_key))) return offset;
      this.stmts.forgetReleased!.run(String(row.ip_key));
    }
    return null;
  }

  /** The lowest free address by a full walk: covers addresses below the frontier that no release recorded. */
  private fromScan(pool: Pool): bigint | null {
    let candidate = nextAllocatable(pool, pool.firstOffset);
    for (const row of this.stmts.usedInRange!.iterate(this.key(pool, 0n), this.key(pool, pool.cidr.size - 1n))) {
      if (candidate === null) return null;
      const used = offsetOf(pool, ipToBigInt(String(row.ip)))!;
      if (used > candidate) return candidate;
      if (used === candidate) candidate = nextAllocatable(pool, candidate + 1n);
    }
    return candidate;
  }

  private describe(pool: Pool, ip: string): Allocation {
    return {
      ip,
      family: pool.cidr.family,
      prefixLength: pool.cidr.family === 4 ? 32 : 128,
      gateway: pool.gateway,
      pool: pool.cidr.text,
    };
  }
}

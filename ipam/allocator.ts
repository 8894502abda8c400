/**
 * Hands out pod addresses from the node's pools, one per pool (one per family
 * when dual stack), idempotently per (container ID, ifname).
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { addressAt, makePool, poolCapacity, type Pool } from './pool.ts';
import { inTransaction, openStore, toRecord, type AllocationKey, type AllocationRecord } from './store.ts';

/** Thrown when a pool has no free address; the CNI turns it into "try again later". */
export class PoolExhaustedError extends Error {
  readonly pool: string;
  constructor(pool: string) {
    super(`pod CIDR ${pool} is exhausted: every address is allocated (delete pods, or give the node a larger pod CIDR)`);
    this.name = 'PoolExhaustedError';
    this.pool = pool;
  }
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
  size: number;
  used: number;
}

/** The node's IPAM: pools plus the SQLite store behind them. */
export class Ipam {
  readonly pools: Pool[];
  private readonly db: DatabaseSync;
  private readonly stmts: Record<string, StatementSync>;

  constructor(dbFile: string, cidrs: string[]) {
    if (cidrs.length === 0) throw new Error('IPAM needs at least one pod CIDR');
    this.pools = cidrs.map(makePool);
    this.db = openStore(dbFile);
    this.stmts = {
      findKey: this.db.prepare('SELECT ip FROM allocations WHERE container_id = ? AND ifname = ? AND pool = ?'),
      isUsed: this.db.prepare('SELECT 1 FROM allocations WHERE ip = ?'),
      insert: this.db.prepare(
        'INSERT INTO allocations (ip, pool, container_id, ifname, namespace, pod, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      cursor: this.db.prepare('SELECT last_offset FROM pool_cursor WHERE pool = ?'),
      setCursor: this.db.prepare(
        'INSERT INTO pool_cursor (pool, last_offset) VALUES (?, ?) ON CONFLICT (pool) DO UPDATE SET last_offset = excluded.last_offset',
      ),
      release: this.db.prepare('DELETE FROM allocations WHERE container_id = ? AND ifname = ? RETURNING ip'),
      list: this.db.prepare('SELECT * FROM allocations ORDER BY pool, created_at'),
      count: this.db.prepare('SELECT COUNT(*) AS n FROM allocations WHERE pool = ?'),
    };
  }

  /** Returns the key's addresses, allocating in every pool where it holds none; throws PoolExhaustedError. */
  allocate(key: AllocationKey): Allocation[] {
    return inTransaction(this.db, () => this.pools.map((pool) => this.allocateIn(pool, key)));
  }

  /** Releases every address the key holds; returns them (empty when it held none). */
  release(key: Pick<AllocationKey, 'containerID' | 'ifname'>): string[] {
    return inTransaction(this.db, () =>
      this.stmts.release!.all(key.containerID, key.ifname).map((row) => String(row.ip)),
    );
  }

  /** Every allocation in the store. */
  list(): AllocationRecord[] {
    return this.stmts.list!.all().map((row) => toRecord(row as Record<string, unknown>));
  }

  /** Size and use of each pool. */
  usage(): PoolUsage[] {
    return this.pools.map((pool) => ({
      cidr: pool.cidr.text,
      size: Number(poolCapacity(pool)),
      used: Number((this.stmts.count!.get(pool.cidr.text) as { n: number }).n),
    }));
  }

  /** Closes the store. */
  close(): void {
    this.db.close();
  }

  private allocateIn(pool: Pool, key: AllocationKey): Allocation {
    const existing = this.stmts.findKey!.get(key.containerID, key.ifname, pool.cidr.text) as { ip: string } | undefined;
    if (existing) return this.describe(pool, existing.ip);
    const cursorRow = this.stmts.cursor!.get(pool.cidr.text) as { last_offset: string } | undefined;
    const span = poolCapacity(pool);
    let offset = cursorRow ? BigInt(cursorRow.last_offset) : pool.lastOffset;
    for (let tried = 0n; tried < span; tried++) {
      offset = offset >= pool.lastOffset || offset < pool.firstOffset ? pool.firstOffset : offset + 1n;
      const ip = addressAt(pool.cidr, offset);
      if (this.stmts.isUsed!.get(ip)) continue;
      this.stmts.insert!.run(ip, pool.cidr.text, key.containerID, key.ifname, key.namespace ?? '', key.pod ?? '', Date.now());
      this.stmts.setCursor!.run(pool.cidr.text, offset.toString());
      return this.describe(pool, ip);
    }
    throw new PoolExhaustedError(pool.cidr.text);
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

/**
 * The service table → the load balancer's maps (lb_services, lb_backends),
 * written as a difference against what the maps hold: a change costs the
 * entries of the frontends and backends it touches, never a rewrite of the
 * table. On start the state is read back from the (adopted) maps, so an agent
 * restart writes nothing when nothing changed.
 *
 * Only ready, not terminating backends get slots. Order of writes, so that a
 * socket hook reading concurrently never picks an id without a backend: new
 * backends, then slots, then a frontend's count, then removed slots, then
 * removed backends. A frontend without slots (no ready endpoint) keeps its
 * slot 0 with count 0: the hooks refuse it at once.
 */
import {
  LB_MAX_BACKENDS,
  LB_MAX_SLOTS_PER_SERVICE,
  decodeAffinityBackend,
  decodeBackend,
  decodeServiceKey,
  decodeServiceValue,
  encodeBackend,
  encodeBackendId,
  encodeServiceHead,
  encodeServiceKey,
  encodeServiceSlot,
  type LbProtocol,
} from '../../datapath/service-lb-abi.ts';
import type { ServiceFrontend } from './table.ts';
import { errorMessage } from '../../lib/errors.ts';

/** The map operations the sync needs (BpfMap has them; tests pass a fake). */
export interface LbMap {
  update(key: Buffer, value: Buffer): void;
  lookup(key: Buffer): Buffer | null;
  delete(key: Buffer): boolean;
  keys(): Buffer[];
}

/**
 * The maps the sync writes. lb_backend_flows is per CPU: a fresh id's counts
 * are cleared. lb_affinity loses the entries naming a backend a frontend no
 * longer has (or an id freed), so no client is kept on a backend that left
 * its Service, nor sent to whatever backend reuses the id.
 */
export interface LbSyncMaps {
  lb_services: LbMap;
  lb_backends: LbMap;
  lb_backend_flows?: { update(key: Buffer, value: Buffer): void };
  lb_affinity?: LbMap;
}

/** What one sync did. */
export interface LbSyncStats {
  written: number;
  deleted: number;
  frontends: number;
  backends: number;
  /** Entries the kernel refused (e.g. a full map), with why; retried on the next sync. */
  failed: string[];
  durationMs: number;
  /** Backends that left a UDP frontend: connected UDP sockets pointing at them are stale (stale-sockets.ts). */
  udpBackendsGone: { address: string; port: number }[];
}

interface FrontendState {
  frontend: { address: string; port: number; protocol: LbProtocol };
  /** Backend ids in slots 1..n (0: unknown, rewrite). */
  slots: number[];
  /** False when slot 0 may not hold slots.length (a failed write): rewrite it. */
  headKnown: boolean;
  /** ClientIP affinity timeout; 0: none. */
  affinitySec: number;
}

const backendKey = (address: string, port: number, protocol: string | number) => `${address}|${port}|${protocol}`;
const frontendKey = (f: { address: string; port: number; protocol: string }) => `${f.address}|${f.port}|${f.protocol}`;

/** The load balancer's maps kept equal to a service table. */
export class ServiceMapSync {
  private readonly maps: LbSyncMaps;
  /** backend "address|port" → id. */
  private readonly backendIds = new Map<string, number>();
  /** The ids in backendIds, kept beside it so an allocation does not scan them all. */
  private readonly usedIds = new Set<number>();
  private readonly frontends = new Map<string, FrontendState>();
  private nextIdHint = 1;

  constructor(maps: LbSyncMaps) {
    this.maps = maps;
    this.adopt();
  }

  /** Reads what the maps hold (left by an earlier agent) into the state the next diff starts from. */
  private adopt(): void {
    for (const key of this.maps.lb_backends.keys()) {
      const value = this.maps.lb_backends.lookup(key);
      if (!value) continue;
      const b = decodeBackend(value);
      this.backendIds.set(backendKey(b.address, b.port, b.protocol), key.readUInt32LE(0));
      this.usedIds.add(key.readUInt32LE(0));
    }
    const slots = new Map<string, Map<number, number>>();
    for (const key of this.maps.lb_services.keys()) {
      const value = this.maps.lb_services.lookup(key);
      if (!value) continue;
      const k = decodeServiceKey(key);
      if (k.protocol !== 'TCP' && k.protocol !== 'UDP') continue;
      const fk = frontendKey({ address: k.address, port: k.port, protocol: k.protocol });
      if (k.slot === 0) {
        const head = decodeServiceValue(value);
        const state = this.frontends.get(fk) ?? { frontend: { address: k.address, port: k.port, protocol: k.protocol }, slots: [], headKnown: true, affinitySec: 0 };
        state.slots.length = head.count;
        state.affinitySec = head.affinityTimeoutSec;
        this.frontends.set(fk, state);
      } else {
        slots.set(fk, (slots.get(fk) ?? new Map()).set(k.slot, decodeServiceValue(value).backendId));
      }
    }
    for (const [fk, state] of this.frontends) {
      const bySlot = slots.get(fk) ?? new Map<number, number>();
      // A slot missing (a sync cut short) reads as 0: the next diff rewrites it.
      state.slots = Array.from({ length: state.slots.length }, (_, i) => bySlot.get(i + 1) ?? 0);
    }
  }

  /** Makes the maps hold the table; returns what was written. Map errors are collected, not thrown. */
  apply(table: ServiceFrontend[]): LbSyncStats {
    const started = performance.now();
    const stats: LbSyncStats = { written: 0, deleted: 0, frontends: 0, backends: 0, failed: [], durationMs: 0, udpBackendsGone: [] };
    // id → backend, built only when a UDP frontend loses one (it costs a pass over every backend).
    let addressMap: Map<number, string> | null = null;
    const addressOf = () => (addressMap ??= new Map([...this.backendIds].map(([bk, id]) => [id, bk])));
    const udpGone = new Set<string>();
    const write = (map: LbMap | LbSyncMaps['lb_backend_flows'], key: Buffer, value: Buffer, what: string): boolean => {
      try {
        map!.update(key, value);
        stats.written++;
        return true;
      } catch (err: unknown) {
        stats.failed.push(`${what}: ${errorMessage(err)}`);
        return false;
      }
    };
    const remove = (map: LbMap, key: Buffer, what: string) => {
      try {
        if (map.delete(key)) stats.deleted++;
      } catch (err: unknown) {
        stats.failed.push(`delete ${what}: ${errorMessage(err)}`);
      }
    };

    // The desired frontends and their ready backends (the socket hooks see TCP and UDP only).
    const desired = new Map<string, { frontend: FrontendState['frontend']; affinitySec: number; backends: { address: string; port: number; protocol: LbProtocol }[] }>();
    for (const f of table) {
      if (f.protocol !== 'TCP' && f.protocol !== 'UDP') continue;
      const protocol = f.protocol;
      const backends = f.backends
        .filter((b) => b.ready && !b.terminating)
        .slice(0, LB_MAX_SLOTS_PER_SERVICE)
        .map((b) => ({ address: b.address, port: b.port, protocol }));
      const affinitySec = f.sessionAffinity === 'ClientIP' ? Math.max(1, f.affinityTimeoutSec) : 0;
      desired.set(frontendKey(f), { frontend: { address: f.address, port: f.port, protocol: f.protocol }, affinitySec, backends });
    }

    // 1. Backends that are new get an id and an entry before any slot names them.
    const wantedBackends = new Set<string>();
    for (const { backends } of desired.values()) {
      for (const b of backends) {
        const bk = backendKey(b.address, b.port, b.protocol);
        wantedBackends.add(bk);
        if (this.backendIds.has(bk)) continue;
        const id = this.freeId();
        if (id === 0) {
          stats.failed.push(`backend ${b.address}:${b.port}: no free backend id (${LB_MAX_BACKENDS - 1} in use)`);
          continue;
        }
        if (!write(this.maps.lb_backends, encodeBackendId(id), encodeBackend(b), `backend ${b.address}:${b.port}`)) continue;
        this.maps.lb_backend_flows?.update(encodeBackendId(id), Buffer.alloc(8));
        this.backendIds.set(bk, id);
        this.usedIds.add(id);
      }
    }

    // 2. Frontends: slots, then the count, then slots past the count.
    const leftAffinity = new Set<number>();
    for (const [fk, want] of desired) {
      const ids = want.backends.map((b) => this.backendIds.get(backendKey(b.address, b.port, b.protocol))).filter((id): id is number => id !== undefined);
      const state = this.frontends.get(fk);
      const old = state?.slots ?? [];
      const next = arrangeSlots(old, ids);
      let ok = true;
      next.forEach((id, i) => {
        if (old[i] !== id) ok = write(this.maps.lb_services, encodeServiceKey(want.frontend, i + 1), encodeServiceSlot(id), `slot ${i + 1} of ${fk}`) && ok;
      });
      if (!state || !state.headKnown || old.length !== next.length || state.affinitySec !== want.affinitySec) {
        const head = encodeServiceHead(next.length, want.affinitySec > 0 ? want.affinitySec : undefined);
        ok = write(this.maps.lb_services, encodeServiceKey(want.frontend, 0), head, `frontend ${fk}`) && ok;
      }
      for (const id of old) {
        if (next.includes(id)) continue;
        if (want.affinitySec > 0) leftAffinity.add(id);
        if (want.frontend.protocol === 'UDP' && addressOf().has(id)) udpGone.add(addressOf().get(id)!);
      }
      for (let i = next.length; i < old.length; i++) remove(this.maps.lb_services, encodeServiceKey(want.frontend, i + 1), `slot ${i + 1} of ${fk}`);
      // A failed write leaves the state unknown: forget it, so the next sync writes the frontend whole.
      this.frontends.set(fk, { frontend: want.frontend, slots: ok ? next : next.map(() => 0), headKnown: ok, affinitySec: want.affinitySec });
    }
    for (const [fk, state] of [...this.frontends]) {
      if (desired.has(fk)) continue;
      remove(this.maps.lb_services, encodeServiceKey(state.frontend, 0), `frontend ${fk}`);
      if (state.frontend.protocol === 'UDP') for (const id of state.slots) if (addressOf().has(id)) udpGone.add(addressOf().get(id)!);
      state.slots.forEach((_, i) => remove(this.maps.lb_services, encodeServiceKey(state.frontend, i + 1), `slot ${i + 1} of ${fk}`));
      this.frontends.delete(fk);
    }

    // 3. Backends no slot names any more.
    for (const [bk, id] of [...this.backendIds]) {
      if (wantedBackends.has(bk)) continue;
      remove(this.maps.lb_backends, encodeBackendId(id), `backend ${bk}`);
      this.backendIds.delete(bk);
      this.usedIds.delete(id);
      leftAffinity.add(id);
    }
    // 4. Affinity to backends that left (one pass over lb_affinity, only when some did).
    if (leftAffinity.size > 0 && this.maps.lb_affinity) {
      for (const key of this.maps.lb_affinity.keys()) {
        const value = this.maps.lb_affinity.lookup(key);
        if (value && leftAffinity.has(decodeAffinityBackend(value))) remove(this.maps.lb_affinity, key, 'affinity entry');
      }
    }
    stats.udpBackendsGone = [...udpGone].map((bk) => {
      const [address, port] = bk.split('|');
      return { address: address!, port: Number(port) };
    });
    stats.frontends = this.frontends.size;
    stats.backends = this.backendIds.size;
    stats.durationMs = performance.now() - started;
    return stats;
  }

  /** The id of a backend, or undefined when it has no slot. */
  backendId(address: string, port: number, protocol: LbProtocol): number | undefined {
    return this.backendIds.get(backendKey(address, port, protocol));
  }

  private freeId(): number {
    const used = this.usedIds;
    for (let n = 0; n < LB_MAX_BACKENDS - 1; n++) {
      const id = ((this.nextIdHint - 1 + n) % (LB_MAX_BACKENDS - 1)) + 1;
      if (!used.has(id)) {
        this.nextIdHint = id + 1;
        return id;
      }
    }
    return 0;
  }
}

/**
 * The new slot list: backends that stay keep their slot, new ones fill the
 * slots of removed ones, then the end; slots left empty are filled from the
 * end, so the list stays dense and most slots are not rewritten.
 */
export function arrangeSlots(old: number[], ids: number[]): number[] {
  const want = new Set(ids);
  const fresh = ids.filter((id) => !old.includes(id));
  const next: (number | null)[] = old.map((id) => (want.has(id) ? id : null));
  // Each id once, even if an old list (adopted from the maps) held it twice.
  const seen = new Set<number>();
  for (let i = 0; i < next.length; i++) {
    const id = next[i];
    if (id === null || id === undefined) continue;
    if (seen.has(id)) next[i] = null;
    else seen.add(id);
  }
  for (let i = 0; i < next.length && fresh.length > 0; i++) if (next[i] === null) next[i] = fresh.shift()!;
  next.push(...fresh);
  for (let i = 0; i < next.length; i++) {
    if (next[i] !== null) continue;
    while (next.length > i && next[next.length - 1] === null) next.pop();
    if (next.length > i + 1) next[i] = next.pop()!;
    else next.length = i;
  }
  return next.filter((id): id is number => id !== null);
}

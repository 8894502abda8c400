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
  LB_MAX_SERVICE_SLOTS,
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

/** The maps a sync can fill up. */
export type LbSizedMap = 'lb_services' | 'lb_backends';

/** The flag that sizes each (agent/flags.ts). */
const SIZE_FLAG: Record<LbSizedMap, string> = { lb_services: '--lb-services-max', lb_backends: '--lb-backends-max' };

/** What the sync is told of the maps' sizes (default: bpf/service-lb.h's). */
export interface LbSyncOptions {
  /** max_entries of lb_services and lb_backends (backend ids run 1..lb_backends-1: they index lb_backend_flows). */
  maxEntries?: Partial<Record<LbSizedMap, number>>;
}

/** What one sync did. */
export interface LbSyncStats {
  written: number;
  deleted: number;
  frontends: number;
  backends: number;
  /** Frontends this sync compared with the maps (all of them on a full sync; the touched ones, and earlier failures, on an update). */
  visited: number;
  /** Entries the kernel refused (e.g. a full map), with why; retried on the next sync. */
  failed: string[];
  /** Entries refused because their map was full (E2BIG, or no free backend id), per map. */
  full: Partial<Record<LbSizedMap, number>>;
  durationMs: number;
  /** Backends that left a UDP frontend: connected UDP sockets pointing at them are stale (stale-sockets.ts). */
  udpBackendsGone: { address: string; port: number }[];
}

type LbFrontend = { address: string; port: number; protocol: LbProtocol };

/** What the maps hold for one frontend. */
interface FrontendState {
  frontend: LbFrontend;
  /** Backend ids in slots 1..n (0: unknown, rewrite). */
  slots: number[];
  /** False when slot 0 may not hold slots.length (a failed write): rewrite it. */
  headKnown: boolean;
  /** ClientIP affinity timeout; 0: none. */
  affinitySec: number;
}

/** What the maps should hold for one frontend: its ready backends (as backend keys) and affinity. */
interface Want {
  frontend: LbFrontend;
  backends: string[];
  affinitySec: number;
}

const backendKey = (address: string, port: number, protocol: string | number) => `${address}|${port}|${protocol}`;
const frontendKey = (f: { address: string; port: number; protocol: string }) => `${f.address}|${f.port}|${f.protocol}`;

/** A table frontend as the socket hooks serve it (TCP and UDP only, ready backends in the slots there are), or null. */
function wantOf(f: ServiceFrontend | undefined): Want | null {
  if (!f || (f.protocol !== 'TCP' && f.protocol !== 'UDP')) return null;
  const protocol = f.protocol;
  const backends = f.backends
    .filter((b) => b.ready && !b.terminating)
    .slice(0, LB_MAX_SLOTS_PER_SERVICE)
    .map((b) => backendKey(b.address, b.port, protocol));
  const affinitySec = f.sessionAffinity === 'ClientIP' ? Math.max(1, f.affinityTimeoutSec) : 0;
  return { frontend: { address: f.address, port: f.port, protocol }, backends, affinitySec };
}

/**
 * The load balancer's maps kept equal to a service table: apply() takes the
 * whole table (the first sync, the local datastore), update() only the
 * frontends a change touched. Both end in the same maps: the desired state
 * (wanted backends per frontend, how many frontends want each backend) is
 * kept here, so an update never walks the other frontends.
 */
export class ServiceMapSync {
  private readonly maps: LbSyncMaps;
  /** backend "address|port|protocol" → id, and back. */
  private readonly backendIds = new Map<string, number>();
  private readonly backendById = new Map<number, string>();
  /** What the maps hold, per frontend key. */
  private readonly frontends = new Map<string, FrontendState>();
  /** What they should hold, per frontend key. */
  private readonly wants = new Map<string, Want>();
  /** Backend key → the number of wanted frontends that list it: a backend leaves the maps at 0. */
  private readonly refs = new Map<string, number>();
  /** Frontends a sync could not write whole (a full map, no free id): compared again on every sync until they are. */
  private readonly retry = new Set<string>();
  private nextIdHint = 1;
  private readonly maxEntries: Record<LbSizedMap, number>;

  constructor(maps: LbSyncMaps, options: LbSyncOptions = {}) {
    this.maps = maps;
    this.maxEntries = { lb_services: LB_MAX_SERVICE_SLOTS, lb_backends: LB_MAX_BACKENDS, ...options.maxEntries };
    this.adopt();
  }

  /** Reads what the maps hold (left by an earlier agent) into the state the next diff starts from. */
  private adopt(): void {
    for (const key of this.maps.lb_backends.keys()) {
      const value = this.maps.lb_backends.lookup(key);
      if (!value) continue;
      const b = decodeBackend(value);
      const id = key.readUInt32LE(0);
      this.backendIds.set(backendKey(b.address, b.port, b.protocol), id);
      this.backendById.set(id, backendKey(b.address, b.port, b.protocol));
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

  /** Makes the maps hold exactly the table (frontends not in it leave); returns what was written. Map errors are collected, not thrown. */
  apply(table: ServiceFrontend[]): LbSyncStats {
    const changes = new Map<string, ServiceFrontend | undefined>();
    for (const f of table) changes.set(frontendKey(f), f);
    for (const fk of this.frontends.keys()) if (!changes.has(fk)) changes.set(fk, undefined);
    for (const fk of this.wants.keys()) if (!changes.has(fk)) changes.set(fk, undefined);
    return this.sync(changes, true);
  }

  /**
   * Makes the maps hold these frontends (undefined: the frontend leaves) and
   * leaves every other one as it is; frontends an earlier sync could not
   * write are retried too. Must follow one apply() of the whole table (which
   * also drops what an earlier agent left and no frontend wants).
   */
  update(changes: Map<string, ServiceFrontend | undefined>): LbSyncStats {
    return this.sync(changes, false);
  }

  private sync(changes: Map<string, ServiceFrontend | undefined>, full: boolean): LbSyncStats {
    const started = performance.now();
    const stats: LbSyncStats = { written: 0, deleted: 0, frontends: 0, backends: 0, visited: 0, failed: [], full: {}, durationMs: 0, udpBackendsGone: [] };
    const udpGone = new Set<string>();
    const refuseFull = (map: LbSizedMap, what: string) => {
      stats.full[map] = (stats.full[map] ?? 0) + 1;
      stats.failed.push(`${what}: map ${map} is full (${this.maxEntries[map]} entries): not served; raise ${SIZE_FLAG[map]}`);
    };
    const write = (map: LbMap, key: Buffer, value: Buffer, what: string): boolean => {
      try {
        map.update(key, value);
        stats.written++;
        return true;
      } catch (err: unknown) {
        // A full hash map refuses a new key with E2BIG.
        if ((err as { code?: unknown }).code === 'E2BIG') refuseFull(map === this.maps.lb_services ? 'lb_services' : 'lb_backends', what);
        else stats.failed.push(`${what}: ${errorMessage(err)}`);
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

    // The new desired state, with the backends no frontend wants any more as candidates to leave.
    const unwanted = new Set<string>();
    for (const [fk, f] of changes) {
      const want = wantOf(f);
      for (const bk of this.wants.get(fk)?.backends ?? []) {
        const n = (this.refs.get(bk) ?? 1) - 1;
        if (n > 0) this.refs.set(bk, n);
        else {
          this.refs.delete(bk);
          unwanted.add(bk);
        }
      }
      if (want) {
        for (const bk of want.backends) this.refs.set(bk, (this.refs.get(bk) ?? 0) + 1);
        this.wants.set(fk, want);
      } else this.wants.delete(fk);
    }
    const keys = new Set([...changes.keys(), ...this.retry]);
    this.retry.clear();
    stats.visited = keys.size;

    // 1. Backends that are new get an id and an entry before any slot names them.
    for (const fk of keys) {
      for (const bk of this.wants.get(fk)?.backends ?? []) {
        if (this.backendIds.has(bk)) continue;
        const [address, port, protocol] = bk.split('|') as [string, string, LbProtocol];
        const id = this.freeId();
        if (id === 0) {
          refuseFull('lb_backends', `backend ${address}:${port}`);
          this.retry.add(fk);
          continue;
        }
        if (!write(this.maps.lb_backends, encodeBackendId(id), encodeBackend({ address, port: Number(port), protocol }), `backend ${address}:${port}`)) {
          this.retry.add(fk);
          continue;
        }
        this.maps.lb_backend_flows?.update(encodeBackendId(id), Buffer.alloc(8));
        this.backendIds.set(bk, id);
        this.backendById.set(id, bk);
      }
    }

    // 2. Frontends: slots, then the count, then slots past the count; frontends no longer wanted leave.
    const leftAffinity = new Set<number>();
    for (const fk of keys) {
      const want = this.wants.get(fk);
      const state = this.frontends.get(fk);
      if (!want) {
        if (!state) continue;
        remove(this.maps.lb_services, encodeServiceKey(state.frontend, 0), `frontend ${fk}`);
        if (state.frontend.protocol === 'UDP') for (const id of state.slots) if (this.backendById.has(id)) udpGone.add(this.backendById.get(id)!);
        state.slots.forEach((_, i) => remove(this.maps.lb_services, encodeServiceKey(state.frontend, i + 1), `slot ${i + 1} of ${fk}`));
        this.frontends.delete(fk);
        continue;
      }
      const ids = want.backends.map((bk) => this.backendIds.get(bk)).filter((id): id is number => id !== undefined);
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
      const kept = new Set(next);
      for (const id of old) {
        if (kept.has(id)) continue;
        if (want.affinitySec > 0) leftAffinity.add(id);
        if (want.frontend.protocol === 'UDP' && this.backendById.has(id)) udpGone.add(this.backendById.get(id)!);
      }
      for (let i = next.length; i < old.length; i++) remove(this.maps.lb_services, encodeServiceKey(want.frontend, i + 1), `slot ${i + 1} of ${fk}`);
      // A failed write leaves the state unknown: forget it, so the next sync writes the frontend whole.
      this.frontends.set(fk, { frontend: want.frontend, slots: ok ? next : next.map(() => 0), headKnown: ok, affinitySec: want.affinitySec });
      if (!ok || ids.length < want.backends.length) this.retry.add(fk);
    }

    // 3. Backends no frontend wants any more (on a full sync: every one, so what an earlier agent left goes too).
    for (const bk of full ? [...this.backendIds.keys()] : unwanted) {
      const id = this.backendIds.get(bk);
      if (id === undefined || this.refs.has(bk)) continue;
      remove(this.maps.lb_backends, encodeBackendId(id), `backend ${bk}`);
      this.backendIds.delete(bk);
      this.backendById.delete(id);
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

  /** True when the maps hold the frontend's count (slot 0): the hooks translate it (or refuse it when it has no backend). */
  serves(address: string, port: number, protocol: LbProtocol): boolean {
    return this.frontends.get(frontendKey({ address, port, protocol }))?.headKnown === true;
  }

  /** The id of a backend, or undefined when it has no slot. */
  backendId(address: string, port: number, protocol: LbProtocol): number | undefined {
    return this.backendIds.get(backendKey(address, port, protocol));
  }

  private freeId(): number {
    const used = this.backendById;
    const ids = this.maxEntries.lb_backends - 1;
    for (let n = 0; n < ids; n++) {
      const id = ((this.nextIdHint - 1 + n) % ids) + 1;
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

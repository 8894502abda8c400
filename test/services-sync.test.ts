/**
 * The service table → the load balancer's maps (agent/services/sync.ts), against
 * in-memory maps: what each change writes, the order readers depend on, adoption. Pure.
 */
import { describe, expect, it } from 'vitest';
import { ServiceMapSync, arrangeSlots, type LbMap } from '../agent/services/sync.ts';
import type { ServiceFrontend } from '../agent/services/table.ts';
import { decodeBackend, decodeServiceKey, decodeServiceValue } from '../datapath/service-lb-abi.ts';

class FakeMap implements LbMap {
  readonly entries = new Map<string, Buffer>();
  readonly log: string[] = [];
  private readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
  update(key: Buffer, value: Buffer): void {
    this.entries.set(key.toString('hex'), Buffer.from(value));
    this.log.push(`${this.name} put ${key.toString('hex')}`);
  }
  lookup(key: Buffer): Buffer | null {
    return this.entries.get(key.toString('hex')) ?? null;
  }
  delete(key: Buffer): boolean {
    this.log.push(`${this.name} del ${key.toString('hex')}`);
    return this.entries.delete(key.toString('hex'));
  }
  keys(): Buffer[] {
    return [...this.entries.keys()].map((k) => Buffer.from(k, 'hex'));
  }
}

function maps() {
  return { lb_services: new FakeMap('services'), lb_backends: new FakeMap('backends') };
}

function frontend(address: string, port: number, backends: [string, number, boolean?][], protocol: 'TCP' | 'UDP' | 'SCTP' = 'TCP'): ServiceFrontend {
  return {
    namespace: 'x', name: 's', portName: '', type: 'ClusterIP', address, port, protocol, sessionAffinity: 'None', affinityTimeoutSec: 10_800,
    backends: backends.map(([a, p, ready]) => ({ address: a, port: p, ready: ready ?? true, terminating: false })),
  };
}

/** What the maps say: frontend → the backends a hook could pick. */
function picks(m: ReturnType<typeof maps>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const key of m.lb_services.keys()) {
    const k = decodeServiceKey(key);
    if (k.slot !== 0) continue;
    const { count } = decodeServiceValue(m.lb_services.lookup(key)!);
    const list: string[] = [];
    for (let slot = 1; slot <= count; slot++) {
      const slotKey = Buffer.from(key);
      slotKey.writeUInt16LE(slot, 20);
      const { backendId } = decodeServiceValue(m.lb_services.lookup(slotKey)!);
      const id = Buffer.alloc(4);
      id.writeUInt32LE(backendId);
      const b = decodeBackend(m.lb_backends.lookup(id)!);
      list.push(`${b.address}:${b.port}`);
    }
    out[`${k.address}:${k.port}/${k.protocol}`] = list.sort();
  }
  return out;
}

describe('service map sync', () => {
  it('writes frontends with their ready backends only; a frontend without any keeps a count of 0 (refused at once)', () => {
    const m = maps();
    const sync = new ServiceMapSync(m);
    const stats = sync.apply([
      frontend('10.96.0.10', 80, [['10.244.0.2', 8080], ['10.244.0.3', 8080], ['10.244.0.4', 8080, false]]),
      frontend('10.96.0.11', 53, [], 'UDP'),
      frontend('10.96.0.12', 9, [['10.244.0.2', 9]], 'SCTP'),
      frontend('10.96.0.10', 80, [['10.244.0.2', 8080]], 'UDP'),
    ]);
    expect(picks(m)).toEqual({ '10.96.0.10:80/TCP': ['10.244.0.2:8080', '10.244.0.3:8080'], '10.96.0.10:80/UDP': ['10.244.0.2:8080'], '10.96.0.11:53/UDP': [] });
    // TCP and UDP on one address and port are two backends, their new flows counted apart.
    expect(stats).toMatchObject({ frontends: 3, backends: 3, failed: [] });
  });

  it('costs per change, not per cluster: one backend more in one of 1,000 Services writes its backend, a slot and a count', () => {
    const m = maps();
    const sync = new ServiceMapSync(m);
    const table = Array.from({ length: 1000 }, (_, i) => frontend(`10.96.${i >> 8}.${i & 255}`, 80, [[`10.244.${i >> 8}.${i & 255}`, 8080]]));
    sync.apply(table);
    expect(sync.apply(table)).toMatchObject({ written: 0, deleted: 0 });
    table[500] = frontend(table[500]!.address, 80, [[table[500]!.backends[0]!.address, 8080], ['10.245.0.1', 8080]]);
    expect(sync.apply(table)).toMatchObject({ written: 3, deleted: 0 });
    // And one backend less: the count, its slot and the backend go.
    table[500] = frontend(table[500]!.address, 80, [['10.245.0.1', 8080]]);
    const stats = sync.apply(table);
    expect(stats.written + stats.deleted).toBeLessThanOrEqual(4);
    expect(picks(m)[`${table[500]!.address}:80/TCP`]).toEqual(['10.245.0.1:8080']);
  });

  it('writes a backend before the slot naming it, and the count after the slots; removes slots after lowering the count', () => {
    const m = maps();
    const sync = new ServiceMapSync(m);
    sync.apply([frontend('10.96.0.10', 80, [['10.244.0.2', 80]])]);
    m.lb_services.log.length = 0;
    m.lb_backends.log.length = 0;
    const merged: string[] = [];
    const orig = [m.lb_services.update.bind(m.lb_services), m.lb_backends.update.bind(m.lb_backends), m.lb_services.delete.bind(m.lb_services), m.lb_backends.delete.bind(m.lb_backends)] as const;
    m.lb_services.update = (k, v) => (merged.push(`slot${k.readUInt16LE(20)} put`), orig[0](k, v));
    m.lb_backends.update = (k, v) => (merged.push('backend put'), orig[1](k, v));
    m.lb_services.delete = (k) => (merged.push(`slot${k.readUInt16LE(20)} del`), orig[2](k));
    m.lb_backends.delete = (k) => (merged.push('backend del'), orig[3](k));
    sync.apply([frontend('10.96.0.10', 80, [['10.244.0.2', 80], ['10.244.0.3', 80]])]);
    expect(merged).toEqual(['backend put', 'slot2 put', 'slot0 put']);
    merged.length = 0;
    sync.apply([frontend('10.96.0.10', 80, [['10.244.0.3', 80]])]);
    // The last backend moves into slot 1, the count drops, then slot 2 and the old backend go.
    expect(merged).toEqual(['slot1 put', 'slot0 put', 'slot2 del', 'backend del']);
    expect(picks(m)).toEqual({ '10.96.0.10:80/TCP': ['10.244.0.3:80'] });
    merged.length = 0;
    sync.apply([]);
    expect(merged).toEqual(['slot0 del', 'slot1 del', 'backend del']);
    expect(m.lb_services.entries.size + m.lb_backends.entries.size).toBe(0);
  });

  it('adopts what an earlier agent wrote: the same table again writes nothing', () => {
    const m = maps();
    const table = [frontend('10.96.0.10', 80, [['10.244.0.2', 80], ['10.244.0.3', 80]]), frontend('fd00:96::a', 53, [['fd00:244::2', 5353]], 'UDP')];
    new ServiceMapSync(m).apply(table);
    const again = new ServiceMapSync(m);
    expect(again.apply(table)).toMatchObject({ written: 0, deleted: 0 });
    expect(again.backendId('10.244.0.3', 80, 'TCP')).toBeGreaterThan(0);
    expect(again.backendId('10.244.0.3', 80, 'UDP')).toBeUndefined();
    expect(picks(m)['fd00:96::a:53/UDP']).toEqual(['fd00:244::2:5353']);
  });

  it('keeps a map error as a failure and retries the frontend whole next time', () => {
    const m = maps();
    const sync = new ServiceMapSync(m);
    let fail = true;
    const update = m.lb_services.update.bind(m.lb_services);
    m.lb_services.update = (k, v) => {
      if (fail && k.readUInt16LE(20) === 0) throw new Error('E2BIG');
      update(k, v);
    };
    expect(sync.apply([frontend('10.96.0.10', 80, [['10.244.0.2', 80]])]).failed).toEqual(['frontend 10.96.0.10|80|TCP: E2BIG']);
    fail = false;
    expect(sync.apply([frontend('10.96.0.10', 80, [['10.244.0.2', 80]])]).failed).toEqual([]);
    expect(picks(m)).toEqual({ '10.96.0.10:80/TCP': ['10.244.0.2:80'] });
  });
});

describe('stale UDP backends', () => {
  it('names the backends that left a UDP frontend (not a TCP one), for their connected sockets to be destroyed', () => {
    const sync = new ServiceMapSync(maps());
    const both = (backends: [string, number][]) => [frontend('10.96.0.10', 53, backends, 'UDP'), frontend('10.96.0.10', 53, backends, 'TCP')];
    expect(sync.apply(both([['10.244.0.2', 53], ['10.244.0.3', 53]])).udpBackendsGone).toEqual([]);
    expect(sync.apply(both([['10.244.0.2', 53]])).udpBackendsGone).toEqual([{ address: '10.244.0.3', port: 53 }]);
    // A UDP frontend removed whole takes its backends with it.
    expect(sync.apply([]).udpBackendsGone).toEqual([{ address: '10.244.0.2', port: 53 }]);
  });
});

describe('session affinity', () => {
  it('writes ClientIP affinity and its timeout into slot 0; a change of either rewrites slot 0 only', () => {
    const m = maps();
    const sync = new ServiceMapSync(m);
    const f = frontend('10.96.0.10', 80, [['10.244.0.2', 80]]);
    sync.apply([{ ...f, sessionAffinity: 'ClientIP', affinityTimeoutSec: 60 }]);
    const head = () => decodeServiceValue(m.lb_services.lookup(m.lb_services.keys().find((k) => k.readUInt16LE(20) === 0)!)!);
    expect(head()).toMatchObject({ count: 1, affinityTimeoutSec: 60 });
    expect(sync.apply([{ ...f, sessionAffinity: 'ClientIP', affinityTimeoutSec: 30 }])).toMatchObject({ written: 1, deleted: 0 });
    expect(head().affinityTimeoutSec).toBe(30);
    expect(sync.apply([f])).toMatchObject({ written: 1, deleted: 0 });
    expect(head().affinityTimeoutSec).toBe(0);
    // Adopted as it is: nothing to write.
    expect(new ServiceMapSync(m).apply([f])).toMatchObject({ written: 0, deleted: 0 });
  });

  it('forgets the clients of a backend that leaves, so none is kept on it nor sent to a reuse of its id', () => {
    const m = { ...maps(), lb_affinity: new FakeMap('affinity') };
    const sync = new ServiceMapSync(m);
    const f = (backends: [string, number][]) => ({ ...frontend('10.96.0.10', 80, backends), sessionAffinity: 'ClientIP' as const });
    sync.apply([f([['10.244.0.2', 80], ['10.244.0.3', 80]])]);
    const entry = (cookie: number, backendId: number) => {
      const key = Buffer.alloc(32);
      key.writeBigUInt64LE(BigInt(cookie));
      const value = Buffer.alloc(16);
      value.writeUInt32LE(backendId, 8);
      m.lb_affinity.update(key, value);
    };
    const gone = sync.backendId('10.244.0.3', 80, 'TCP')!;
    entry(1, sync.backendId('10.244.0.2', 80, 'TCP')!);
    entry(2, gone);
    sync.apply([f([['10.244.0.2', 80]])]);
    expect(m.lb_affinity.keys().map((k) => Number(k.readBigUInt64LE(0)))).toEqual([1]);
  });
});

describe('slot arrangement', () => {
  it('keeps backends in their slots, fills holes with new ones, then from the end', () => {
    expect(arrangeSlots([1, 2, 3], [1, 2, 3])).toEqual([1, 2, 3]);
    expect(arrangeSlots([1, 2, 3], [1, 3, 4])).toEqual([1, 4, 3]);
    expect(arrangeSlots([1, 2, 3, 4], [1, 4])).toEqual([1, 4]);
    expect(arrangeSlots([1, 2, 3, 4], [2, 3])).toEqual([3, 2]);
    expect(arrangeSlots([1, 2], [1, 2, 5, 6])).toEqual([1, 2, 5, 6]);
    expect(arrangeSlots([1, 1, 2], [1, 2])).toEqual([1, 2]);
    expect(arrangeSlots([1, 2, 3], [])).toEqual([]);
  });
});

describe('a full backend map', () => {
  it('counts a backend with no free id as refused by a full lb_backends, says what to raise, and serves it once one is free (retried without a change)', () => {
    const m = maps();
    const sync = new ServiceMapSync(m, { maxEntries: { lb_backends: 3 } });
    const stats = sync.apply([frontend('10.96.0.10', 80, [['10.244.0.2', 80], ['10.244.0.3', 80], ['10.244.0.4', 80]])]);
    expect(stats.full).toEqual({ lb_backends: 1 });
    expect(stats.failed).toEqual(['backend 10.244.0.4:80: map lb_backends is full (3 entries): not served; raise --lb-backends-max']);
    expect(picks(m)['10.96.0.10:80/TCP']).toHaveLength(2);
    // One backend leaves: the refused one gets its id on the next sync (retried even though only the other frontend changed).
    const next = sync.update(new Map([['10.96.0.11|80|TCP', frontend('10.96.0.11', 80, [])]]));
    expect(next.full).toEqual({ lb_backends: 1 });
    // An id freed by a sync is taken by the next (new backends are written before old ones leave).
    expect(sync.apply([frontend('10.96.0.10', 80, [['10.244.0.3', 80], ['10.244.0.4', 80]])]).full).toEqual({ lb_backends: 1 });
    expect(sync.update(new Map())).toMatchObject({ full: {}, failed: [] });
    expect(picks(m)['10.96.0.10:80/TCP']).toEqual(['10.244.0.3:80', '10.244.0.4:80']);
  });
});

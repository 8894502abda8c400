import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Ipam, PoolExhaustedError } from '../ipam/allocator.ts';
import { cidrContains, parseAddressRange, parseCidr } from '../lib/cidr.ts';
import { podCIDRsOfNode, validatePodCIDRs } from '../ipam/pod-cidrs.ts';
import { makePool, nextAllocatable, notAllocatable, poolCapacity } from '../ipam/pool.ts';
import { netnsState, runningOn } from '../agent/reclaim/ipam-reconcile.ts';
import { decideReleases, type ReconcileInput } from '../ipam/reconcile.ts';
import type { AllocationRecord } from '../ipam/store.ts';

describe('cidr', () => {
  it('parses IPv4 and IPv6 prefixes to canonical text', () => {
    expect(parseCidr('10.244.0.0/24').text).toBe('10.244.0.0/24');
    expect(parseCidr('fd00:0:0::/64').text).toBe('fd00::/64');
  });
  it('rejects host bits, bad lengths and garbage', () => {
    expect(() => parseCidr('10.0.0.1/24')).toThrow(/host bits/);
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/prefix length/);
    expect(() => parseCidr('banana')).toThrow(/invalid CIDR/);
  });
  it('knows which addresses a prefix contains', () => {
    const c = parseCidr('10.1.0.0/16');
    expect(cidrContains(c, '10.1.255.255')).toBe(true);
    expect(cidrContains(c, '10.2.0.0')).toBe(false);
    expect(cidrContains(c, 'fd00::1')).toBe(false);
  });
  it('reads a reserved range as a CIDR, first-last, or one address', () => {
    expect(parseAddressRange('10.0.0.8/30')).toMatchObject({ family: 4, first: 0x0a000008n, last: 0x0a00000bn });
    expect(parseAddressRange('10.0.0.5-10.0.0.7')).toMatchObject({ family: 4, first: 0x0a000005n, last: 0x0a000007n });
    expect(parseAddressRange('fd00::9')).toMatchObject({ family: 6, first: 0xfd000000000000000000000000000009n, last: 0xfd000000000000000000000000000009n });
  });
  it('rejects reversed, mixed-family and malformed ranges, naming them', () => {
    expect(() => parseAddressRange('10.0.0.7-10.0.0.5')).toThrow(/10\.0\.0\.7-10\.0\.0\.5.*comes before/);
    expect(() => parseAddressRange('10.0.0.1-fd00::1')).toThrow(/one family/);
    expect(() => parseAddressRange('10.0.0.1-10.0.0.2-10.0.0.3')).toThrow(/invalid address range/);
    expect(() => parseAddressRange('pear')).toThrow(/'pear'/);
  });
});

describe('pod CIDRs', () => {
  it('accepts one prefix per family and canonicalises them', () => {
    expect(validatePodCIDRs(['10.1.0.0/24', 'fd00:1:0::/64'])).toEqual(['10.1.0.0/24', 'fd00:1::/64']);
  });
  it('refuses two prefixes of one family, and none at all', () => {
    expect(() => validatePodCIDRs(['10.1.0.0/24', '10.2.0.0/24'])).toThrow(/both IPv4/);
    expect(() => validatePodCIDRs([])).toThrow(/at least one/);
  });
  it('reads a Node: podCIDRs first, then podCIDR, else nothing', () => {
    expect(podCIDRsOfNode({ spec: { podCIDR: '10.1.0.0/24', podCIDRs: ['10.1.0.0/24', 'fd00::/64'] } })).toEqual(['10.1.0.0/24', 'fd00::/64']);
    expect(podCIDRsOfNode({ spec: { podCIDR: '10.1.0.0/24' } })).toEqual(['10.1.0.0/24']);
    expect(podCIDRsOfNode({ spec: {} })).toEqual([]);
    expect(podCIDRsOfNode(null)).toEqual([]);
  });
});

describe('pool', () => {
  it('never offers the network, gateway or broadcast address', () => {
    const p = makePool('10.0.0.0/30');
    expect(p.gateway).toBe('10.0.0.1');
    expect([p.firstOffset, p.lastOffset]).toEqual([2n, 2n]);
    expect([0n, 1n, 3n].map((o) => notAllocatable(p, o))).toEqual(['network', 'gateway', 'broadcast']);
  });
  it('refuses a pool too small to hold a pod', () => {
    expect(() => makePool('10.0.0.0/31')).toThrow(/too small/);
    expect(() => makePool('fd00::/127')).toThrow(/too small/);
  });
  it('offers the last IPv6 address: IPv6 has no broadcast', () => {
    const p = makePool('fd00::/125');
    expect([p.firstOffset, p.lastOffset, poolCapacity(p)]).toEqual([2n, 7n, 6n]);
  });
  it('clips and merges reserved ranges, ignoring other families and other prefixes', () => {
    const reserved = ['10.0.0.0/29', '10.0.0.6-10.0.0.9', '10.0.0.12', '10.0.1.0/24', 'fd00::/64'].map(parseAddressRange);
    const p = makePool('10.0.0.0/28', reserved);
    expect(p.reserved).toEqual([
      { first: 2n, last: 9n },
      { first: 12n, last: 12n },
    ]);
    expect(p.reservedText).toEqual(['10.0.0.0/29', '10.0.0.6-10.0.0.9', '10.0.0.12']);
    expect(poolCapacity(p)).toBe(13n - 9n);
    expect([nextAllocatable(p, 0n), nextAllocatable(p, 11n), nextAllocatable(p, 12n), nextAllocatable(p, 15n)]).toEqual([10n, 11n, 13n, null]);
  });
});

describe('Ipam', () => {
  let dir: string;
  const open = (cidrs: string[], reserved: string[] = []) => new Ipam(path.join(dir, 'ipam.db'), cidrs, { reserved });
  const ip = (ipam: Ipam, containerID: string, ifname = 'eth0') => ipam.allocate({ containerID, ifname }).map((a) => a.ip);
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ipam-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives the same key the same address back, and another ifname another address', () => {
    const ipam = open(['10.9.0.0/24']);
    const a = ipam.allocate({ containerID: 'c1', ifname: 'eth0' });
    expect(ipam.allocate({ containerID: 'c1', ifname: 'eth0' })).toEqual(a);
    expect(a[0]).toMatchObject({ ip: '10.9.0.2', gateway: '10.9.0.1', prefixLength: 32, family: 4 });
    expect(ip(ipam, 'c1', 'net1')).toEqual(['10.9.0.3']);
    ipam.close();
  });

  it('reuses a released address only after the rest of the pool', () => {
    const ipam = open(['10.9.0.0/29']);
    const first = ip(ipam, 'c1')[0]!;
    expect(ipam.release({ containerID: 'c1', ifname: 'eth0' })).toEqual([first]);
    const next = [2, 3, 4, 5, 6].map((i) => ip(ipam, `c${i}`)[0]);
    expect(next).toEqual(['10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6', '10.9.0.2']);
    ipam.close();
  });

  it('reuses released addresses in release order, the longest released first, not in address order', () => {
    const ipam = open(['10.9.0.0/29']);
    for (const c of ['a', 'b', 'c', 'd', 'e']) ip(ipam, c); // .2 .. .6: the pool is full
    ipam.release({ containerID: 'd', ifname: 'eth0' }); // .5 first
    ipam.release({ containerID: 'b', ifname: 'eth0' }); // then .3
    expect(ip(ipam, 'f')).toEqual(['10.9.0.5']);
    expect(ip(ipam, 'g')).toEqual(['10.9.0.3']);
    ipam.close();
  });

  it('keeps the reuse order across reopening the store', () => {
    let ipam = open(['10.9.0.0/29']);
    for (const c of ['a', 'b', 'c']) ip(ipam, c); // .2 .3 .4
    ipam.release({ containerID: 'a', ifname: 'eth0' });
    ipam.close();
    ipam = open(['10.9.0.0/29']);
    // The frontier continues after .4; the released .2 waits for the end of the pool.
    expect(['d', 'e', 'f'].map((c) => ip(ipam, c)[0])).toEqual(['10.9.0.5', '10.9.0.6', '10.9.0.2']);
    ipam.close();
  });

  it('never hands out a reserved address, and counts them out of the size', () => {
    const ipam = open(['10.9.0.0/28'], ['10.9.0.4-10.9.0.6', '10.9.0.10', '10.8.0.0/16']);
    const got: string[] = [];
    for (let i = 0; ; i++) {
      try {
        got.push(ip(ipam, `c${i}`)[0]!);
      } catch (err: unknown) {
        expect(err).toBeInstanceOf(PoolExhaustedError);
        break;
      }
    }
    expect(got).toEqual(['10.9.0.2', '10.9.0.3', '10.9.0.7', '10.9.0.8', '10.9.0.9', '10.9.0.11', '10.9.0.12', '10.9.0.13', '10.9.0.14']);
    expect(ipam.usage()).toEqual([
      { cidr: '10.9.0.0/28', family: 4, size: 9, used: 9, gateway: '10.9.0.1', reserved: ['10.9.0.4-10.9.0.6', '10.9.0.10'] },
    ]);
    ipam.close();
  });

  it('names the pool when it is exhausted, hands out nothing twice, and recovers after a release', () => {
    const ipam = open(['10.9.0.0/29']);
    const ips = [1, 2, 3, 4, 5].map((i) => ip(ipam, `c${i}`)[0]);
    expect(new Set(ips).size).toBe(5);
    expect(() => ip(ipam, 'c6')).toThrow(PoolExhaustedError);
    expect(() => ip(ipam, 'c6')).toThrow(/10\.9\.0\.0\/29.*exhausted/);
    ipam.release({ containerID: 'c3', ifname: 'eth0' });
    expect(ip(ipam, 'c6')).toEqual([ips[2]]);
    ipam.close();
  });

  it('allocates an IPv6 pool to its last address, then reports it exhausted', () => {
    const ipam = open(['fd00:9::/125']);
    expect([1, 2, 3, 4, 5, 6].map((i) => ip(ipam, `c${i}`)[0])).toEqual(['fd00:9::2', 'fd00:9::3', 'fd00:9::4', 'fd00:9::5', 'fd00:9::6', 'fd00:9::7']);
    expect(() => ip(ipam, 'c7')).toThrow(/fd00:9::\/125/);
    ipam.close();
  });

  it('allocates from a /64 and honours an IPv6 reserved range', () => {
    const ipam = open(['fd00:9::/64'], ['fd00:9::2-fd00:9::ff']);
    expect(ip(ipam, 'c1')).toEqual(['fd00:9::100']);
    expect(poolCapacity(ipam.pools[0]!)).toBe(2n ** 64n - 2n - 254n);
    expect(ipam.usage()[0]).toMatchObject({ used: 1 });
    ipam.close();
  });

  it('keeps allocations across reopening the store', () => {
    const file = path.join(dir, 'ipam.db');
    const a = new Ipam(file, ['10.9.0.0/24']);
    const addr = a.allocate({ containerID: 'c1', ifname: 'eth0', namespace: 'x', pod: 'a', netns: '/var/run/netns/x' })[0]!.ip;
    a.close();
    const b = new Ipam(file, ['10.9.0.0/24']);
    expect(b.list()).toMatchObject([{ ip: addr, containerID: 'c1', ifname: 'eth0', namespace: 'x', pod: 'a', netns: '/var/run/netns/x' }]);
    expect(ip(b, 'c2')[0]).not.toBe(addr);
    expect(b.usage()).toMatchObject([{ cidr: '10.9.0.0/24', size: 253, used: 2 }]);
    b.close();
  });

  it('gives one address per family in a dual-stack node, and releases both', () => {
    const ipam = open(['10.9.0.0/24', 'fd00:9::/120']);
    const got = ipam.allocate({ containerID: 'c1', ifname: 'eth0' });
    expect(got.map((a) => [a.ip, a.prefixLength, a.gateway])).toEqual([
      ['10.9.0.2', 32, '10.9.0.1'],
      ['fd00:9::2', 128, 'fd00:9::1'],
    ]);
    expect(ipam.release({ containerID: 'c1', ifname: 'eth0' }).sort()).toEqual(['10.9.0.2', 'fd00:9::2']);
    expect(ipam.list()).toEqual([]);
    ipam.close();
  });

  it('allocates all families or none: an exhausted IPv6 pool leaves no IPv4 address behind', () => {
    const ipam = open(['10.9.0.0/24', 'fd00:9::/126']);
    ip(ipam, 'c1');
    ip(ipam, 'c2');
    expect(() => ip(ipam, 'c3')).toThrow(/fd00:9::\/126/);
    expect(ipam.list().filter((a) => a.containerID === 'c3')).toEqual([]);
    expect(ipam.usage().map((u) => u.used)).toEqual([2, 2]);
    ipam.close();
  });

  it('reports allocations outside a changed pod CIDR, never reuses them, and allocates the same key anew', () => {
    let ipam = open(['10.9.0.0/24']);
    ip(ipam, 'c1');
    ipam.close();
    ipam = open(['10.7.0.0/24']);
    expect(ipam.stale()).toMatchObject([{ ip: '10.9.0.2', containerID: 'c1', reason: 'outside-pod-cidrs' }]);
    expect(ipam.usage()).toMatchObject([{ cidr: '10.7.0.0/24', used: 0 }]);
    expect(ip(ipam, 'c1')).toEqual(['10.7.0.2']);
    // Its release frees both; the old address is never offered by the new pool.
    expect(ipam.release({ containerID: 'c1', ifname: 'eth0' }).sort()).toEqual(['10.7.0.2', '10.9.0.2']);
    ipam.close();
  });

  it('keeps allocations inside a widened pod CIDR, for the same key and around them', () => {
    let ipam = open(['10.9.0.0/24']);
    ip(ipam, 'c1'); // 10.9.0.2
    ipam.close();
    ipam = open(['10.9.0.0/23']);
    expect(ipam.stale()).toEqual([]);
    expect(ip(ipam, 'c1')).toEqual(['10.9.0.2']);
    expect(ip(ipam, 'c2')).toEqual(['10.9.0.3']);
    expect(ipam.usage()).toMatchObject([{ used: 2 }]);
    ipam.close();
  });

  it('reports an allocation that a new reservation covers and does not count it as used', () => {
    let ipam = open(['10.9.0.0/24']);
    ip(ipam, 'c1'); // .2
    ip(ipam, 'c2'); // .3
    ipam.close();
    ipam = open(['10.9.0.0/24'], ['10.9.0.3']);
    expect(ipam.stale()).toMatchObject([{ ip: '10.9.0.3', reason: 'reserved' }]);
    expect(ipam.usage()).toMatchObject([{ size: 252, used: 1 }]);
    ipam.close();
  });

  it('opens a store of the earlier schema and finds free holes its wrapped cursor skipped', () => {
    const file = path.join(dir, 'ipam.db');
    const old = new DatabaseSync(file);
    old.exec(`CREATE TABLE allocations (ip TEXT PRIMARY KEY, pool TEXT NOT NULL, container_id TEXT NOT NULL, ifname TEXT NOT NULL,
      namespace TEXT NOT NULL DEFAULT '', pod TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, UNIQUE (container_id, ifname, pool));
      CREATE TABLE pool_cursor (pool TEXT PRIMARY KEY, last_offset TEXT NOT NULL);
      INSERT INTO allocations VALUES ('10.9.0.2', '10.9.0.0/29', 'a', 'eth0', 'x', 'a', 1), ('10.9.0.4', '10.9.0.0/29', 'c', 'eth0', 'x', 'c', 1),
        ('10.9.0.5', '10.9.0.0/29', 'd', 'eth0', 'x', 'd', 1), ('10.9.0.6', '10.9.0.0/29', 'e', 'eth0', 'x', 'e', 1);
      INSERT INTO pool_cursor VALUES ('10.9.0.0/29', '6');`);
    old.close();
    const ipam = open(['10.9.0.0/29']);
    expect(ipam.list().map((a) => a.ip)).toEqual(['10.9.0.2', '10.9.0.4', '10.9.0.5', '10.9.0.6']);
    expect(ip(ipam, 'a')).toEqual(['10.9.0.2']);
    expect(ip(ipam, 'f')).toEqual(['10.9.0.3']);
    expect(() => ip(ipam, 'g')).toThrow(PoolExhaustedError);
    ipam.close();
  });
});

describe('reconcile decision', () => {
  const NOW = 1_000_000;
  const GRACE = 1_000;
  /** A time on the boot-time clock of this boot. */
  const boot = (ms: number) => ({ bootId: 'boot-1', ms });
  const alloc = (containerID: string, over: Partial<AllocationRecord> = {}): AllocationRecord => ({
    ip: `10.0.0.${containerID.charCodeAt(0) % 200}`,
    pool: '10.0.0.0/24',
    containerID,
    ifname: 'eth0',
    namespace: 'x',
    pod: containerID,
    netns: '',
    createdAt: 0,
    createdBoot: boot(NOW - 10 * GRACE),
    ...over,
  });
  const decide = (over: Partial<ReconcileInput>) => {
    const d = decideReleases({ allocations: [], endpoints: [], netnsState: () => 'gone', graceMs: GRACE, now: boot(NOW), ...over });
    return {
      release: Object.fromEntries(d.release.map((r) => [r.containerID, r.reason])),
      keep: Object.fromEntries(d.keep.map((r) => [r.containerID, r.reason])),
    };
  };

  it('never releases within the grace period, whatever else holds', () => {
    expect(decide({ allocations: [alloc('a', { createdBoot: boot(NOW - GRACE + 1) })], validAttachments: [] })).toEqual({ release: {}, keep: { a: 'within-grace' } });
  });

  it('with the runtime list (CNI GC), releases exactly the attachments not in it', () => {
    const allocations = [alloc('a'), alloc('b'), alloc('c', { ifname: 'net1' })];
    const r = decide({
      allocations,
      endpoints: [{ containerID: 'b', ifname: 'eth0', netns: '/gone' }],
      validAttachments: [{ containerID: 'a', ifname: 'eth0' }, { containerID: 'c', ifname: 'eth0' }],
    });
    expect(r).toEqual({ release: { b: 'not-in-valid-attachments', c: 'not-in-valid-attachments' }, keep: { a: 'valid-attachment' } });
  });

  it('releases an endpoint whose netns is gone, even when its pod still exists', () => {
    const r = decide({
      allocations: [alloc('a'), alloc('b')],
      endpoints: [
        { containerID: 'a', ifname: 'eth0', netns: '/run/netns/a' },
        { containerID: 'b', ifname: 'eth0', netns: '/run/netns/b' },
      ],
      netnsState: (ns) => (ns === '/run/netns/a' ? 'exists' : 'gone'),
      podExists: () => true,
    });
    expect(r).toEqual({ release: { b: 'netns-gone' }, keep: { a: 'netns-exists' } });
  });

  it('never releases a pod the datastore shows running on this node, whatever its netns looks like (issue 14)', () => {
    // As on a kubelet whose runtime keeps netns files where the agent's container cannot look.
    const r = decide({
      allocations: [alloc('a'), alloc('b')],
      endpoints: [
        { containerID: 'a', ifname: 'eth0', netns: '/run/containerd/netns/a' },
        { containerID: 'b', ifname: 'eth0', netns: '/run/netns/b' },
      ],
      netnsState: () => 'gone',
      podRunning: (_ns, name) => name === 'a',
      podExists: () => true,
    });
    expect(r).toEqual({ release: { b: 'netns-gone' }, keep: { a: 'pod-running' } });
  });

  it('releases an attachment superseded by a newer sandbox of the same running pod, and only when its own netns is gone', () => {
    // An ADD failed after allocating and could not release (a full disk); the pod's sandbox was made again.
    const r = decide({
      allocations: [alloc('a', { pod: 'p', netns: '/run/netns/old' }), alloc('b', { pod: 'p', netns: '/run/netns/new' }), alloc('c', { pod: 'q', netns: '/run/netns/q-old' })],
      endpoints: [{ containerID: 'b', ifname: 'eth0', netns: '/run/netns/new' }],
      netnsState: (ns) => (ns === '/run/netns/new' ? 'exists' : 'gone'),
      podRunning: () => true,
      podExists: () => true,
    });
    expect(r).toEqual({ release: { a: 'superseded' }, keep: { b: 'netns-exists', c: 'pod-running' } });
    // Out of sight is not gone: nothing is superseded.
    const unknown = decide({
      allocations: [alloc('a', { pod: 'p', netns: '/proc/1/ns/net' }), alloc('b', { pod: 'p', netns: '/run/netns/new' })],
      netnsState: (ns) => (ns === '/run/netns/new' ? 'exists' : 'unknown'),
      podRunning: () => true,
      podExists: () => true,
    });
    expect(unknown.release).toEqual({});
    // The same netns path again (a local cluster names netns after the pod): the one without an endpoint goes.
    const same = decide({
      allocations: [alloc('a', { pod: 'p', netns: '/run/netns/p' }), alloc('b', { pod: 'p', netns: '/run/netns/p' })],
      endpoints: [{ containerID: 'b', ifname: 'eth0', netns: '/run/netns/p' }],
      netnsState: () => 'exists',
      podRunning: () => true,
    });
    expect(same).toEqual({ release: { a: 'superseded' }, keep: { b: 'netns-exists' } });
    // Without a registered sibling, nothing is superseded.
    expect(decide({ allocations: [alloc('a', { pod: 'p', netns: '/run/netns/p' }), alloc('b', { pod: 'p', netns: '/run/netns/p' })], netnsState: () => 'exists' }).release).toEqual({});
  });

  it('a netns out of sight is not gone: an endpoint keeps it, an allocation alone follows the datastore', () => {
    const r = decide({
      allocations: [alloc('a'), alloc('b', { netns: '/proc/4242/ns/net' }), alloc('c', { netns: '/proc/4343/ns/net' })],
      endpoints: [{ containerID: 'a', ifname: 'eth0', netns: '/proc/4141/ns/net' }],
      netnsState: () => 'unknown',
      podExists: (_ns, name) => name === 'b',
    });
    expect(r).toEqual({ release: { c: 'pod-gone' }, keep: { a: 'endpoint-exists', b: 'pod-exists' } });
  });

  it('netnsState: exists, gone where its directory is visible, unknown where it is not or under /proc', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-netns-'));
    try {
      fs.writeFileSync(path.join(dir, 'a'), '');
      expect(netnsState(path.join(dir, 'a'))).toBe('exists');
      expect(netnsState(path.join(dir, 'b'))).toBe('gone');
      expect(netnsState(path.join(dir, 'not-mounted', 'c'))).toBe('unknown');
      expect(netnsState('/proc/999999999/ns/net')).toBe('unknown');
      expect(netnsState(`/proc/${process.pid}/ns/net`)).toBe('exists');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runningOn: the pods of this node, or of no node (a one-node local cluster)', () => {
    const pod = (name: string, nodeName?: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'x', name }, spec: nodeName === undefined ? {} : { nodeName } });
    expect([...runningOn([pod('a', 'n1'), pod('b', 'n2'), pod('c')], 'n1')]).toEqual(['x/a', 'x/c']);
  });

  it('keeps an endpoint whose netns exists even when its pod is gone: the runtime still owes a DEL', () => {
    const r = decide({ allocations: [alloc('a')], endpoints: [{ containerID: 'a', ifname: 'eth0', netns: '/n' }], netnsState: () => 'exists', podExists: () => false });
    expect(r).toEqual({ release: {}, keep: { a: 'netns-exists' } });
  });

  it('uses the netns the allocation recorded when there is no endpoint', () => {
    const r = decide({ allocations: [alloc('a', { netns: '/n/a' }), alloc('b', { netns: '/n/b' })], netnsState: (ns) => (ns === '/n/a' ? 'exists' : 'gone'), podExists: () => true });
    expect(r).toEqual({ release: { b: 'netns-gone' }, keep: { a: 'netns-exists' } });
  });

  it('without endpoint or netns, follows the datastore, and releases when there is no datastore', () => {
    const allocations = [alloc('a'), alloc('b')];
    expect(decide({ allocations, podExists: (_ns, name) => name === 'a' })).toEqual({ release: { b: 'pod-gone' }, keep: { a: 'pod-exists' } });
    expect(decide({ allocations })).toEqual({ release: { a: 'no-endpoint', b: 'no-endpoint' }, keep: {} });
  });

  it('decides per attachment: both addresses of a dual-stack pod go together, the newest one sets the age', () => {
    const d = decideReleases({
      allocations: [alloc('a'), alloc('a', { ip: 'fd00::2', createdBoot: boot(NOW - 1) })],
      endpoints: [],
      netnsState: () => 'gone',
      graceMs: GRACE,
      now: boot(NOW),
    });
    expect(d.keep).toMatchObject([{ containerID: 'a', ips: ['10.0.0.97', 'fd00::2'], reason: 'within-grace' }]);
    const later = decideReleases({ allocations: [alloc('a'), alloc('a', { ip: 'fd00::2' })], endpoints: [], netnsState: () => 'gone', graceMs: GRACE, now: boot(NOW) });
    expect(later.release).toMatchObject([{ containerID: 'a', ips: ['10.0.0.97', 'fd00::2'], reason: 'no-endpoint' }]);
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Ipam, PoolExhaustedError } from '../ipam/allocator.ts';
import { cidrContains, parseCidr } from '../ipam/cidr.ts';
import { makePool } from '../ipam/pool.ts';

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
});

describe('pool', () => {
  it('never offers the network, gateway or broadcast address', () => {
    const p = makePool('10.0.0.0/30');
    expect(p.gateway).toBe('10.0.0.1');
    expect([p.firstOffset, p.lastOffset]).toEqual([2n, 2n]);
  });
  it('refuses a pool too small to hold a pod', () => {
    expect(() => makePool('10.0.0.0/31')).toThrow(/too small/);
  });
});

describe('Ipam', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ipam-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives the same key the same address back', () => {
    const ipam = new Ipam(path.join(dir, 'ipam.db'), ['10.9.0.0/24']);
    const a = ipam.allocate({ containerID: 'c1', ifname: 'eth0' });
    expect(ipam.allocate({ containerID: 'c1', ifname: 'eth0' })).toEqual(a);
    expect(a[0]).toMatchObject({ ip: '10.9.0.2', gateway: '10.9.0.1', prefixLength: 32, family: 4 });
    ipam.close();
  });

  it('reuses a released address only after the rest of the pool', () => {
    const ipam = new Ipam(path.join(dir, 'ipam.db'), ['10.9.0.0/29']);
    const first = ipam.allocate({ containerID: 'c1', ifname: 'eth0' })[0]!.ip;
    expect(ipam.release({ containerID: 'c1', ifname: 'eth0' })).toEqual([first]);
    const next = [2, 3, 4, 5, 6].map((i) => ipam.allocate({ containerID: `c${i}`, ifname: 'eth0' })[0]!.ip);
    expect(next).toEqual(['10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6', '10.9.0.2']);
    ipam.close();
  });

  it('names the pool when it is exhausted and hands out nothing twice', () => {
    const ipam = new Ipam(path.join(dir, 'ipam.db'), ['10.9.0.0/29']);
    const ips = [1, 2, 3, 4, 5].map((i) => ipam.allocate({ containerID: `c${i}`, ifname: 'eth0' })[0]!.ip);
    expect(new Set(ips).size).toBe(5);
    expect(() => ipam.allocate({ containerID: 'c6', ifname: 'eth0' })).toThrow(PoolExhaustedError);
    expect(() => ipam.allocate({ containerID: 'c6', ifname: 'eth0' })).toThrow(/10\.9\.0\.0\/29/);
    ipam.close();
  });

  it('keeps allocations across reopening the store', () => {
    const file = path.join(dir, 'ipam.db');
    const a = new Ipam(file, ['10.9.0.0/24']);
    const ip = a.allocate({ containerID: 'c1', ifname: 'eth0', namespace: 'x', pod: 'a' })[0]!.ip;
    a.close();
    const b = new Ipam(file, ['10.9.0.0/24']);
    expect(b.list()).toMatchObject([{ ip, containerID: 'c1', ifname: 'eth0', namespace: 'x', pod: 'a' }]);
    expect(b.allocate({ containerID: 'c2', ifname: 'eth0' })[0]!.ip).not.toBe(ip);
    expect(b.usage()).toEqual([{ cidr: '10.9.0.0/24', size: 253, used: 2 }]);
    b.close();
  });

  it('gives one address per family in a dual-stack node', () => {
    const ipam = new Ipam(path.join(dir, 'ipam.db'), ['10.9.0.0/24', 'fd00:9::/120']);
    const got = ipam.allocate({ containerID: 'c1', ifname: 'eth0' });
    expect(got.map((a) => [a.ip, a.prefixLength, a.gateway])).toEqual([
      ['10.9.0.2', 32, '10.9.0.1'],
      ['fd00:9::2', 128, 'fd00:9::1'],
    ]);
    ipam.close();
  });
});

/**
 * IPAM's grace period runs on the boot-time clock, not the wall clock: the
 * wall clock stepped by hours either way (NTP after a VM's resume) releases
 * nothing early and holds nothing forever; a reboot (a new boot id) makes
 * everything older than any grace period; a store written before the boot
 * time was stored starts its grace period at the migration. The clock is
 * injected; the wall clock is vitest's fake Date.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Ipam } from '../ipam/allocator.ts';
import { elapsedMs, systemBootClock, type BootClock, type BootTime } from '../lib/boot-clock.ts';
import { reconcileIpam } from '../agent/reclaim/ipam-reconcile.ts';

const GRACE_MS = 5 * 60_000;
const HOUR_MS = 3_600_000;

/** A boot-time clock the test moves by hand. */
class StepClock implements BootClock {
  current: BootTime = { bootId: 'boot-1', ms: 10_000 };
  now(): BootTime {
    return { ...this.current };
  }
  advance(ms: number): void {
    this.current.ms += ms;
  }
  reboot(): void {
    this.current = { bootId: `${this.current.bootId}+1`, ms: 1_000 };
  }
}

describe('IPAM grace periods on the boot-time clock', () => {
  let dir: string;
  let clock: StepClock;
  let ipam: Ipam;
  const logs: string[] = [];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ipam-clock-'));
    clock = new StepClock();
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-06-01T12:00:00Z'));
  });
  afterEach(() => {
    ipam?.close();
    vi.useRealTimers();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** One reconciliation: no endpoint, no netns, no datastore, so only the grace period keeps an allocation. */
  const reconcile = () =>
    reconcileIpam({ ipam, endpoints: { list: () => [], unregister: () => null }, log: (m) => logs.push(m) }, { graceMs: GRACE_MS }).released.map((r) => r.containerID);

  it('a wall clock stepped hours ahead releases nothing early', () => {
    ipam = new Ipam(path.join(dir, 'ipam.db'), ['10.9.0.0/24'], { clock });
    ipam.allocate({ containerID: 'a', ifname: 'eth0' });
    vi.setSystemTime(Date.now() + 3 * HOUR_MS);
    clock.advance(1_000);
    expect(reconcile()).toEqual([]);
    clock.advance(GRACE_MS - 2_000);
    expect(reconcile()).toEqual([]);
    clock.advance(1_000);
    expect(reconcile()).toEqual(['a']);
  });

  it('a wall clock stepped hours back holds nothing beyond its grace period', () => {
    ipam = new Ipam(path.join(dir, 'ipam.db'), ['10.9.0.0/24'], { clock });
    ipam.allocate({ containerID: 'a', ifname: 'eth0' });
    vi.setSystemTime(Date.now() - 3 * HOUR_MS);
    clock.advance(GRACE_MS - 1);
    expect(reconcile()).toEqual([]);
    clock.advance(1);
    expect(reconcile()).toEqual(['a']);
  });

  it('steps both ways across many reconciliations: released exactly once its boot-time age reaches the grace period', () => {
    ipam = new Ipam(path.join(dir, 'ipam.db'), ['10.9.0.0/24'], { clock });
    ipam.allocate({ containerID: 'a', ifname: 'eth0' });
    const steps = [+5 * HOUR_MS, -7 * HOUR_MS, +30 * 60_000, -90 * 60_000, +24 * HOUR_MS];
    let aged = 0;
    for (const step of steps) {
      vi.setSystemTime(Date.now() + step);
      clock.advance(60_000);
      aged += 60_000;
      expect(reconcile(), `after ${aged} ms of boot time`).toEqual(aged >= GRACE_MS ? ['a'] : []);
      if (aged >= GRACE_MS) return;
    }
    throw new Error('never released');
  });

  it('an allocation of an earlier boot is past its grace period, whatever its numbers', () => {
    ipam = new Ipam(path.join(dir, 'ipam.db'), ['10.9.0.0/24'], { clock });
    clock.advance(HOUR_MS);
    ipam.allocate({ containerID: 'old', ifname: 'eth0' });
    clock.reboot();
    ipam.allocate({ containerID: 'new', ifname: 'eth0' });
    // The new boot's clock reads less than the old allocation's: without the boot id it would look younger than now.
    expect(ipam.list().find((a) => a.containerID === 'old')!.createdBoot.ms).toBeGreaterThan(clock.now().ms);
    expect(reconcile()).toEqual(['old']);
  });

  it('migrates a store without boot times: its allocations start their grace period at the migration', () => {
    const file = path.join(dir, 'ipam.db');
    const old = new DatabaseSync(file);
    old.exec(`
      CREATE TABLE allocations (ip TEXT PRIMARY KEY, pool TEXT NOT NULL, container_id TEXT NOT NULL, ifname TEXT NOT NULL,
        namespace TEXT NOT NULL DEFAULT '', pod TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, ip_key TEXT,
        netns TEXT NOT NULL DEFAULT '', UNIQUE (container_id, ifname, pool));
      CREATE TABLE pool_cursor (pool TEXT PRIMARY KEY, last_offset TEXT NOT NULL);
      PRAGMA user_version = 1;`);
    // Written 10 hours "ago" by the wall clock, and one 10 hours "ahead" (a clock that was wrong then).
    old.prepare('INSERT INTO allocations (ip, pool, container_id, ifname, created_at) VALUES (?, ?, ?, ?, ?)').run('10.9.0.2', '10.9.0.0/24', 'past', 'eth0', Date.now() - 10 * HOUR_MS);
    old.prepare('INSERT INTO allocations (ip, pool, container_id, ifname, created_at) VALUES (?, ?, ?, ?, ?)').run('10.9.0.3', '10.9.0.0/24', 'future', 'eth0', Date.now() + 10 * HOUR_MS);
    old.close();

    ipam = new Ipam(file, ['10.9.0.0/24'], { clock });
    expect(ipam.list().map((a) => [a.containerID, a.createdBoot])).toEqual([
      ['past', clock.now()],
      ['future', clock.now()],
    ]);
    expect(reconcile()).toEqual([]);
    clock.advance(GRACE_MS);
    expect(reconcile().sort()).toEqual(['future', 'past']);
    const check = new DatabaseSync(file);
    expect(check.prepare('PRAGMA user_version').get()).toEqual({ user_version: 2 });
    check.close();
  });
});

describe('the machine boot-time clock', () => {
  it('reads the boot id and /proc/uptime, never goes back, and counts from one boot only', () => {
    const a = systemBootClock.now();
    expect(a.bootId).toBe(fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    const uptimeMs = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
    expect(Math.abs(a.ms - uptimeMs)).toBeLessThan(1_000);
    const b = systemBootClock.now();
    expect(elapsedMs(a, b)).toBeGreaterThanOrEqual(0);
    expect(elapsedMs(a, { bootId: 'another boot', ms: a.ms + 1 })).toBe(Infinity);
    expect(elapsedMs(b, a)).toBe(0);
  });
});

/**
 * The DEL queue on disk: what DEL leaves when the agent is down, and how the
 * agent carries it out.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { drainDelQueue, listQueuedDels, queueDel, unqueueDel, type QueuedDel } from '../contract/del-queue.ts';

describe('DEL queue', () => {
  let dir = '';
  beforeEach(() => {
    dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-delq-')), 'queue');
  });
  afterEach(() => fs.rmSync(path.dirname(dir), { recursive: true, force: true }));

  const entry = (containerID: string): QueuedDel => ({ containerID, ifname: 'eth0', hostIfname: 'lxc0123456789a', queuedAt: 1 });

  it('creates its directory root-only and keeps one file per attachment, however often it is queued', () => {
    queueDel(dir, entry('a'));
    queueDel(dir, entry('a'));
    queueDel(dir, entry('b'));
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(listQueuedDels(dir).map((q) => q.entry.containerID).sort()).toEqual(['a', 'b']);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('names files by a hash, so no container ID or ifname can point outside the directory', () => {
    const file = queueDel(dir, { ...entry('../../etc/passwd'), ifname: '../x' });
    expect(path.dirname(file)).toBe(dir);
    expect(path.basename(file)).toMatch(/^[0-9a-f]{32}\.json$/);
  });

  it('lists nothing when the directory does not exist', () => {
    expect(listQueuedDels(dir)).toEqual([]);
  });

  it('drops one attachment with unqueueDel', () => {
    queueDel(dir, entry('a'));
    queueDel(dir, entry('b'));
    unqueueDel(dir, 'a', 'eth0');
    unqueueDel(dir, 'never-queued', 'eth0');
    expect(listQueuedDels(dir).map((q) => q.entry.containerID)).toEqual(['b']);
  });

  it('drains every entry through release, removes those released and keeps those that failed for the next drain', () => {
    queueDel(dir, entry('ok'));
    queueDel(dir, entry('fails'));
    const released: string[] = [];
    const logs: string[] = [];
    const n = drainDelQueue(
      dir,
      (e) => {
        if (e.containerID === 'fails') throw new Error('store busy');
        released.push(e.containerID);
      },
      (m) => logs.push(m),
    );
    expect(n).toBe(1);
    expect(released).toEqual(['ok']);
    expect(listQueuedDels(dir).map((q) => q.entry.containerID)).toEqual(['fails']);
    expect(logs.join('\n')).toMatch(/released ok\/eth0/);
    expect(logs.join('\n')).toMatch(/fails\/eth0 failed, will retry: store busy/);
  });

  it('skips and reports malformed files instead of failing the drain', () => {
    queueDel(dir, entry('ok'));
    fs.writeFileSync(path.join(dir, 'garbage.json'), '{not json');
    fs.writeFileSync(path.join(dir, 'partial.json'), '{"containerID": "x"}');
    const bad: string[] = [];
    expect(listQueuedDels(dir, (f) => bad.push(path.basename(f))).map((q) => q.entry.containerID)).toEqual(['ok']);
    expect(bad.sort()).toEqual(['garbage.json', 'partial.json']);
  });
});

/**
 * The CNI plugin's CNI_NETNS check: only a network namespace other than the
 * plugin's own is a pod sandbox.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isNetnsPath, isOwnNetns } from '../datapath/netns.ts';

describe('CNI_NETNS validation', () => {
  const name = `sl-nstype-${randomBytes(3).toString('hex')}`;
  const pod = `/var/run/netns/${name}`;
  beforeAll(() => execFileSync('ip', ['netns', 'add', name]));
  afterAll(() => execFileSync('ip', ['netns', 'del', name]));

  it('accepts a named network namespace and /proc/<pid>/ns/net', () => {
    expect(isNetnsPath(pod)).toBe(true);
    expect(isNetnsPath(`/proc/${process.pid}/ns/net`)).toBe(true);
  });

  it('refuses namespace files of every other kind, though they live on nsfs too', () => {
    for (const kind of ['mnt', 'pid', 'user', 'uts', 'ipc', 'cgroup', 'time']) {
      expect(isNetnsPath(`/proc/self/ns/${kind}`), kind).toBe(false);
    }
  });

  it('refuses files, directories, devices and paths that do not exist', () => {
    for (const p of ['/etc/hostname', '/tmp', '/dev/null', '/var/run/netns/sl-nstype-none', '']) expect(isNetnsPath(p), p).toBe(false);
  });

  it("tells the plugin's own (host) network namespace from a pod's", () => {
    expect(isOwnNetns('/proc/self/ns/net')).toBe(true);
    expect(isOwnNetns(pod)).toBe(false);
    expect(isOwnNetns('/nonexistent')).toBe(false);
  });
});

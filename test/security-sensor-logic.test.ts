// The sensor's pure parts: a kernel record made a contract event (pod, host, uids, paths,
// flags), and the kill and deny-connect entries made map entries. No root, no kernel.
import { describe, expect, it } from 'vitest';
import { absolutePath, buildEvent, openFlagNames, type EventContext } from '../agent/security/event-builder.ts';
import { connectMapEntries, killMapEntries, mergeConnectEntries } from '../agent/security/enforcement.ts';
import { PodIndex } from '../agent/security/pod-index.ts';
import { ProcessTable } from '../agent/security/process-table.ts';
import { seesHostPids } from '../agent/security/sensor.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeConnectRule, decodeKillKey, type SecHeader, type SecRecord } from '../datapath/security-abi.ts';

const POD_INODE = 4026532100;
const h = (over: Partial<SecHeader> = {}): SecHeader => ({ timeNs: 2_000_000_000n, type: 0, flags: 0, netns: POD_INODE, pid: 42, tid: 42, ppid: 1, uid: 1000, euid: 1000, comm: 'sh', ...over });

const ctx: EventContext = {
  pod: (inode) => (inode === POD_INODE ? { namespace: 'shop', name: 'web-1', containerId: 'c0ffee', inode } : undefined),
  labels: (ns, pod) => ({ app: `${ns}-${pod}` }),
  process: (pid) => (pid === 42 ? { exepath: '/bin/sh', args: ['sh', '-c', 'x'], pname: 'bash' } : null),
  bootOffsetMs: Date.UTC(2026, 0, 1),
  readlink: (p) => {
    if (p === '/proc/42/cwd') return '/srv/app';
    if (p === '/proc/42/fd/7') return '/var/data';
    throw new Error('ENOENT');
  },
};

describe('buildEvent', () => {
  it('an exec in a pod: the pod with labels and container id, time from the boot offset, what to remember', () => {
    const r: SecRecord = { kind: 'exec', h: h({ comm: 'cat' }), pcomm: 'sh', filename: './cat', args: ['./cat', 'x'], argsCut: false, killed: true };
    const { event, exec } = buildEvent(r, ctx);
    expect(event).toEqual({
      time: '2026-01-01T00:00:02.000Z',
      type: 'execve',
      proc: { pid: 42, ppid: 1, uid: 1000, name: 'cat', exepath: '/srv/app/cat', args: ['./cat', 'x'], pname: 'sh' },
      host: false,
      pod: { namespace: 'shop', name: 'web-1', labels: { app: 'shop-web-1' }, containerId: 'c0ffee', netnsInode: POD_INODE },
      enforced: 'killed',
    });
    expect(exec).toEqual({ exepath: '/srv/app/cat', args: ['./cat', 'x'], pname: 'sh' });
  });

  it('a setuid binary runs as its effective uid, the real one as previousUid; a netns of no pod is the host', () => {
    const { event } = buildEvent({ kind: 'exec', h: h({ euid: 0, netns: 1 }), pcomm: 'sh', filename: '/usr/bin/su', args: ['su'], argsCut: false, killed: false }, ctx);
    expect(event.proc).toMatchObject({ uid: 0, previousUid: 1000 });
    expect(event.host).toBe(true);
    expect(event.pod).toBeUndefined();
  });

  it('setuid: which of uid and euid became 0, with its value before', () => {
    const real = buildEvent({ kind: 'setuid', h: h({ uid: 0, euid: 0 }), oldUid: 1000, oldEuid: 0, syscall: 105 }, ctx).event;
    expect(real.proc).toMatchObject({ uid: 0, previousUid: 1000, exepath: '/bin/sh', pname: 'bash' });
    const eff = buildEvent({ kind: 'setuid', h: h({ uid: 1000, euid: 0 }), oldUid: 1000, oldEuid: 1000, syscall: 113 }, ctx).event;
    expect(eff.proc).toMatchObject({ uid: 0, previousUid: 1000 });
  });

  it('an open relative to a directory fd; a connect; an exit', () => {
    const open = buildEvent({ kind: 'open', h: h(), dfd: 7, path: 'f.db', flags: 0o2102, openat2: true }, ctx).event;
    expect(open).toMatchObject({ type: 'openat2', file: { path: '/var/data/f.db', flags: 0o2102, flagNames: ['O_RDWR', 'O_CREAT', 'O_APPEND'] } });
    const conn = buildEvent({ kind: 'connect', h: h(), family: 6, port: 443, protocol: 17, addr: Buffer.from('20010db8000000000000000000000001', 'hex'), denied: true, socket: false }, ctx).event;
    expect(conn).toMatchObject({ type: 'connect', connect: { ip: '2001:db8::1', port: 443, family: 6, protocol: 'UDP' }, enforced: 'denied' });
    // A raw socket refused at socket(): no destination.
    const raw = buildEvent({ kind: 'connect', h: h(), family: 4, port: 0, protocol: 6, addr: Buffer.alloc(4), denied: true, socket: true }, ctx).event;
    expect(raw).toMatchObject({ type: 'connect', connect: { ip: '0.0.0.0', port: 0, family: 4, protocol: 'RAW', socket: 'raw' }, enforced: 'denied' });
    expect(buildEvent({ kind: 'exit', h: h(), exitCode: 0, signal: 9 }, ctx).event).toMatchObject({ type: 'procexit', exit: { code: 0, signal: 9 } });
  });

  it('a path whose process is gone stays as given; flag names start with the access mode', () => {
    expect(absolutePath('etc/shadow', 99, -100, ctx.readlink!)).toBe('etc/shadow');
    expect(absolutePath('/etc/shadow', 42, -100, ctx.readlink!)).toBe('/etc/shadow');
    expect(absolutePath('/tmp/./x/../../etc/shadow', 42, -100, ctx.readlink!)).toBe('/etc/shadow');
    expect(openFlagNames(0)).toEqual(['O_RDONLY']);
    expect(openFlagNames(0o1101)).toEqual(['O_WRONLY', 'O_CREAT', 'O_TRUNC']);
  });
});

describe('enforcement entries', () => {
  const inodes: Record<string, number> = { 'shop/web-1': 11, 'shop/web-2': 12 };
  const inodeOf = (ns: string, name: string) => inodes[`${ns}/${name}`];

  it('kill: one key per pod and binary, 0 for every pod, pods not known left out', () => {
    const entries = killMapEntries(
      [
        { pod: { namespace: 'shop', name: 'web-1' }, binary: 'nc', rule: 1 },
        { pod: '*', binary: 'xmrig', rule: 2 },
        { pod: { namespace: 'shop', name: 'gone' }, binary: 'nc', rule: 1 },
      ],
      inodeOf,
    );
    expect([...entries.values()].map((e) => decodeKillKey(e.key))).toEqual([
      { netns: 11, name: 'nc' },
      { netns: 0, name: 'xmrig' },
    ]);
  });

  it('deny-connect: allow lists intersect, deny lists are taken away, too many ports throw', () => {
    expect(mergeConnectEntries([
      { pod: '*', mode: 'allow-only', ports: [80, 443, 8080], rule: 1 },
      { pod: '*', mode: 'allow-only', ports: [443, 8080], rule: 2 },
      { pod: '*', mode: 'deny', ports: [8080], rule: 3 },
    ])).toEqual({ mode: 'allow-only', ports: [443], rule: 1 });
    expect(mergeConnectEntries([{ pod: '*', mode: 'deny', ports: [25], rule: 1 }, { pod: '*', mode: 'deny', ports: [23, 25], rule: 2 }])).toEqual({ mode: 'deny', ports: [23, 25], rule: 1 });
    expect(() => mergeConnectEntries([{ pod: '*', mode: 'deny', ports: Array.from({ length: 17 }, (_, i) => i + 1), rule: 9 }])).toThrow(/17 ports .* at most 16/);
  });

  it("deny-connect: a pod's own entry includes the every-pod ones; other pods get the wildcard", () => {
    const entries = connectMapEntries(
      [
        { pod: { namespace: 'shop', name: 'web-1' }, mode: 'deny', ports: [22], rule: 1 },
        { pod: '*', mode: 'deny', ports: [25], rule: 2 },
      ],
      inodeOf,
    );
    const byNetns = Object.fromEntries([...entries.values()].map((e) => [e.key.readUInt32LE(0), decodeConnectRule(e.value)]));
    expect(byNetns).toEqual({ 11: { mode: 'deny', ports: [22, 25], rule: 1 }, 0: { mode: 'deny', ports: [25], rule: 2 } });
  });
});

describe('PodIndex', () => {
  it('stats each endpoint once, follows removals, and logs an unreadable netns', () => {
    const stats: string[] = [];
    const logs: string[] = [];
    const index = new PodIndex({
      inodeOf: (p) => {
        stats.push(p);
        if (p.endsWith('bad')) throw new Error('ENOENT');
        return p.length;
      },
      log: (m) => logs.push(m),
    });
    const ep = (id: number, pod: string, netns: string) => ({ id, namespace: 'ns', pod, netns, containerID: `c${id}` });
    expect(index.track([ep(1, 'a', '/run/netns/aa'), ep(2, 'b', '/run/netns/bad')])).toBe(true);
    expect(index.track([ep(1, 'a', '/run/netns/aa'), ep(2, 'b', '/run/netns/bad')])).toBe(false);
    expect(stats).toEqual(['/run/netns/aa', '/run/netns/bad']);
    expect(index.pod(13)).toMatchObject({ name: 'a', containerId: 'c1' });
    expect(logs[0]).toMatch(/ns\/b .*unattributed/);
    expect(index.track([])).toBe(true);
    expect(index.pod(13)).toBeUndefined();
  });
});

describe('outside the host pid namespace', () => {
  it('NSpid with one pid is the host namespace; with more, /proc is not asked', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sens-logic-'));
    try {
      writeFileSync(join(dir, 'host'), 'Name:\tnode\nNSpid:\t4242\n');
      writeFileSync(join(dir, 'pod'), 'Name:\tnode\nNSpid:\t4242\t1\n');
      expect(seesHostPids(join(dir, 'host'))).toBe(true);
      expect(seesHostPids(join(dir, 'pod'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // This process is in /proc: a table told not to look must not find it there.
    expect(new ProcessTable({ procfs: null }).get(process.pid)).toBeNull();
    expect(new ProcessTable().get(process.pid)).toMatchObject({ exepath: expect.stringMatching(/node/) });
  });
});

// The security object loads, attaches every hook this kernel has, is adopted as it is by a
// second load (an agent restart), and detaches when asked. The mode probe names each
// missing kind with its errno. Root: bpffs, tracefs, cgroup v2.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureBpffs } from '../datapath/bpffs.ts';
import { SECURITY_LINKS, loadSecurity, removeSecurity, type Security } from '../datapath/security-loader.ts';
import { probeSecurityModes } from '../datapath/security-probe.ts';
import { cgroup2Root } from '../datapath/trace-loader.ts';
import { withMakefileBuild } from './support/bpf-build.ts';

let objectBytes: Buffer;
const pinDir = `/sys/fs/bpf/sens-loader-${randomUUID().slice(0, 8)}`;
const opened: Security[] = [];

beforeAll(() => {
  ensureBpffs();
  objectBytes = withMakefileBuild((path) => readFileSync(path), { variable: 'SECURITY_OBJ', file: 'sluice-security.bpf.o' });
});

afterEach(() => {
  for (const s of opened.splice(0)) s.close();
  removeSecurity(pinDir, true);
});

function load(attach = true): Security {
  const s = loadSecurity({ pinDir, objectBytes, cgroupRoot: cgroup2Root(), attach });
  opened.push(s);
  return s;
}

describe('loadSecurity', () => {
  it('attaches every hook, and a second load adopts the pins without touching the links', () => {
    const first = load();
    expect(first.adopted).toBe(false);
    expect(first.missing).toEqual([]);
    expect(first.attached.sort()).toEqual(SECURITY_LINKS.map((l) => l.name).sort());
    expect(existsSync(first.eventsPath)).toBe(true);
    const second = load();
    expect(second.adopted).toBe(true);
    expect(second.attached).toEqual([]);
    expect(second.removed).toEqual([]);
    expect(second.links).toEqual(first.links);
  });

  it('attach: false removes the links and keeps programs and maps pinned', () => {
    load();
    const off = load(false);
    expect(off.removed.sort()).toEqual(SECURITY_LINKS.map((l) => l.name).sort());
    expect(readdirSync(join(pinDir, 'links'))).toEqual([]);
    expect(readdirSync(join(pinDir, 'progs')).length).toBe(11);
  });

  it('without cgroup v2 the connect, sendmsg and sock_create hooks are reported missing, the rest attached', () => {
    const s = loadSecurity({ pinDir, objectBytes, cgroupRoot: null, attach: true });
    opened.push(s);
    expect(s.missing.map((m) => m.name).sort()).toEqual(['connect4', 'connect6', 'sendmsg4', 'sendmsg6', 'sock-create']);
    expect(s.attached).toContain('openat');
  });
});

describe('probeSecurityModes', () => {
  it('finds tp_btf (the control) and names each other mode with a reason when it does not load', () => {
    const modes = probeSecurityModes();
    expect(modes.map((m) => m.mode)).toEqual(['tp_btf', 'fentry', 'kprobe', 'lsm']);
    expect(modes[0]).toEqual({ mode: 'tp_btf', available: true });
    for (const m of modes.slice(1)) if (!m.available) expect(m.reason, m.mode).toMatch(/^(load|attach|perf_event_open kprobe): E[A-Z]+/);
    // What ../shared/ENVIRONMENT.md measured on this kernel; a kernel that allows them makes this say so.
    console.log(modes.map((m) => `${m.mode}: ${m.available ? 'available' : m.reason}`).join('; '));
  });
});

/**
 * The migration window under real traffic (issue 33): an upgrade whose
 * datapath resizes conntrack is held after its first copy of the maps
 * (SLUICE_MIGRATION_PAUSE_UNTIL) while the old programs keep forwarding: a
 * TCP connection copied before is reset (its conntrack entry deleted in the
 * old map), and a new one is opened. Once the agent runs the new datapath,
 * the reset flow is not in the new conntrack, and the new connection is,
 * and carries data, though its client is isolated for ingress (a reply with
 * no entry would be dropped).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMapInfo } from '../datapath/bpf-info.ts';
import { closeFd, mapGetNextKey, objGet } from '../datapath/libbpf.ts';
import { MIGRATION_PAUSE_ENV } from '../datapath/pin-migration.ts';
import { withMakefileBuild } from './support/bpf-build.ts';
import { TestCluster } from './support/local-cluster.ts';

const PORT_RESET = 7410;
const PORT_OPENED = 7411;
const GROWN_FLAGS = '-DSLUICE_MAX_CONNTRACK=300000';
/** struct ct_key: dport at 34 (network order), family at 37. */
const CT_DPORT = 34;
const CT_FAMILY = 37;
const POLL_MS = 20;

/**
 * A TCP client: connects, exchanges a line with the echo server, prints
 * "open", waits until the file argv[4] exists, then either resets the
 * connection (SO_LINGER 0, "reset") or exchanges one more line ("ok").
 */
const CLIENT = `
import os, socket, struct, sys, time
mode, ip, port, trigger = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = socket.create_connection((ip, port), timeout=5)
s.sendall(b"a\\n"); assert s.recv(16) == b"a\\n"
print("open", flush=True)
while not os.path.exists(trigger): time.sleep(0.02)
if mode == "reset":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); s.close(); print("reset", flush=True)
else:
    s.sendall(b"b\\n"); assert s.recv(16) == b"b\\n"; print("ok", flush=True)
`;

function withMap<T>(mapPath: string, use: (fd: number) => T): T {
  const fd = objGet(mapPath);
  try {
    return use(fd);
  } finally {
    closeFd(fd);
  }
}

/** Destination ports of the IPv4 entries of a pinned conntrack map. */
function conntrackPorts(mapPath: string): number[] {
  return withMap(mapPath, (fd) => {
    const info = readMapInfo(fd, 'conntrack');
    const ports: number[] = [];
    let prev: Buffer | null = null;
    for (;;) {
      const key = Buffer.alloc(info.keySize);
      if (!mapGetNextKey(fd, prev, key, 'conntrack')) break;
      prev = key;
      if (key[CT_FAMILY] === 4) ports.push(key.readUInt16BE(CT_DPORT));
    }
    return ports;
  });
}

async function until(what: string, check: () => boolean, limitMs = 60_000): Promise<void> {
  for (let waited = 0; !check(); waited += POLL_MS) {
    if (waited > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

describe('the migration window under traffic', () => {
  const cluster = new TestCluster();
  let grownFile = '';
  beforeAll(async () => {
    await cluster.up();
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: up33, labels: {ns: up33}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: up33, name: a, labels: {role: client}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: up33, name: b, labels: {role: server}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: up33, name: client-isolated}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Ingress]
`);
    grownFile = path.join(cluster.dir, 'grown.bpf.o');
    writeFileSync(grownFile, withMakefileBuild((p) => readFileSync(p), undefined, GROWN_FLAGS));
    writeFileSync(path.join(cluster.dir, 'client.py'), CLIENT);
  }, 180_000);
  afterAll(() => cluster.teardown());

  /** The client in pod a: resolves on each line it prints; exits with its code. */
  function client(netns: string, mode: 'reset' | 'hold', ip: string, port: number, trigger: string) {
    const child = cluster.spawn('ip', ['netns', 'exec', netns, 'python3', path.join(cluster.dir, 'client.py'), mode, ip, String(port), trigger]);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<{ code: number | null; out: string }>((resolve) => child.on('close', (code) => resolve({ code, out })));
    return { printed: (line: string) => until(`"${line}" from the ${mode} client on ${port}`, () => out.includes(line) || child.exitCode !== null).then(() => expect(out).toContain(line)), exited };
  }

  it('a flow reset in the window does not come back, a flow opened there is kept and carries data', async () => {
    const pods = await cluster.podsByName();
    const [a, b] = [pods['up33/a']!, pods['up33/b']!];
    const bIp = b.ips.find((ip) => ip.includes('.'))!;
    await cluster.serve(b.netns, PORT_RESET, 'tcp');
    await cluster.serve(b.netns, PORT_OPENED, 'tcp');
    const pinDir = cluster.bpfDir;
    const staging = path.join(pinDir, 'migration-staging');
    const [resetNow, exchangeNow, resume] = ['reset-now', 'exchange-now', 'resume'].map((n) => path.join(cluster.dir, n));

    const doomed = client(a.netns, 'reset', bIp, PORT_RESET, resetNow);
    await doomed.printed('open');
    expect(conntrackPorts(path.join(pinDir, 'maps', 'conntrack'))).toContain(PORT_RESET);

    // The upgrade, held after its first copy.
    const oldPid = cluster.config().agentPid;
    process.kill(oldPid, 'SIGTERM');
    await until('the old agent to exit', () => { try { process.kill(oldPid, 0); return false; } catch { return true; } });
    process.env.SLUICE_BPF_OBJECT = grownFile;
    process.env[MIGRATION_PAUSE_ENV] = resume;
    let upgraded: Promise<void>;
    try {
      upgraded = cluster.up();
    } finally {
      delete process.env.SLUICE_BPF_OBJECT;
      delete process.env[MIGRATION_PAUSE_ENV];
    }
    const stagedConntrack = path.join(staging, 'maps', 'conntrack');
    // The first copy is done once the staged conntrack (the new map, which no program runs yet) holds the flow.
    await until('the first copy of conntrack', () => existsSync(stagedConntrack) && conntrackPorts(stagedConntrack).includes(PORT_RESET));

    // In the window: the old programs see the RST and a new connection.
    writeFileSync(resetNow, '');
    await doomed.printed('reset');
    const opened = client(a.netns, 'hold', bIp, PORT_OPENED, exchangeNow);
    await opened.printed('open');
    const oldConntrack = conntrackPorts(path.join(pinDir, 'maps', 'conntrack'));
    expect(oldConntrack).not.toContain(PORT_RESET);
    expect(oldConntrack).toContain(PORT_OPENED);
    expect(existsSync(staging)).toBe(true); // still in the window: nothing switched yet

    writeFileSync(resume, '');
    await upgraded;
    const log = readFileSync(path.join(cluster.dir, 'agent.log'), 'utf8');
    expect(log).toMatch(/maps migrated to new layouts: .*conntrack/);
    expect(log).toMatch(/caught up with the old programs' changes since the copy: .*conntrack \([1-9]\d* written, [1-9]\d* deleted\)/);
    expect(withMap(path.join(pinDir, 'maps', 'conntrack'), (fd) => readMapInfo(fd, 'conntrack').maxEntries)).toBe(300_000);
    const newConntrack = conntrackPorts(path.join(pinDir, 'maps', 'conntrack'));
    expect(newConntrack, 'the reset flow is not back in the new conntrack').not.toContain(PORT_RESET);
    expect(newConntrack, 'the flow opened in the window is in the new conntrack').toContain(PORT_OPENED);
    writeFileSync(exchangeNow, '');
    const done = await opened.exited;
    expect(done.code, done.out).toBe(0);
    expect(done.out).toContain('ok');
  }, 180_000);
});

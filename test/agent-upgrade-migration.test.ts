/**
 * An upgrade whose datapath resizes maps, and the downgrade back, under
 * traffic (issue 33, step 3): the agent migrates the maps (conntrack,
 * endpoints, policy, fragments... copied into new maps), switches every
 * veth's links and replaces the pins, while a TCP connection stays open and
 * pings run. The connection's conntrack entry is the one made before the
 * upgrade (its creation time kept), a pod isolated before stays isolated,
 * and an allowed peer stays allowed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMapInfo } from '../datapath/bpf-info.ts';
import { closeFd, mapGetNextKey, mapLookupElem, objGet } from '../datapath/libbpf.ts';
import { datapathVersion } from '../datapath/pin-version.ts';
import { withMakefileBuild } from './support/bpf-build.ts';
import { must, SLUICE, TestCluster } from './support/local-cluster.ts';

const PORT = 7300;
const HOLD_MS = 25_000;
const PING_INTERVAL_S = 0.05;
const PING_COUNT = 400;
const GROWN_FLAGS = '-DSLUICE_MAX_ENDPOINTS=70000 -DSLUICE_MAX_POLICY=1100000 -DSLUICE_MAX_CONNTRACK=300000 -DSLUICE_MAX_FRAGMENTS=131000';
/** struct ct_key: dport at 34 (network order), family at 37; struct ct_value: created_ns at 0. */
const CT_DPORT = 34;
const CT_FAMILY = 37;

function exitOf(child: import('node:child_process').ChildProcess): Promise<{ code: number | null; out: string }> {
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
}

/** The conntrack map's id and size, and the creation time of each entry of the test's connection (either direction). */
function conntrack(pinDir: string): { id: number; maxEntries: number; created: bigint[] } {
  const fd = objGet(path.join(pinDir, 'maps', 'conntrack'));
  try {
    const info = readMapInfo(fd, 'conntrack');
    const created: bigint[] = [];
    const value = Buffer.alloc(info.valueSize);
    let prev: Buffer | null = null;
    for (;;) {
      const key = Buffer.alloc(info.keySize);
      if (!mapGetNextKey(fd, prev, key, 'conntrack')) break;
      prev = key;
      if (key[CT_FAMILY] === 4 && key.readUInt16BE(CT_DPORT) === PORT && mapLookupElem(fd, key, value, 'conntrack')) created.push(value.readBigUInt64LE(0));
    }
    return { id: info.id, maxEntries: info.maxEntries, created: created.sort() };
  } finally {
    closeFd(fd);
  }
}

describe('upgrading and downgrading across changed map layouts', () => {
  const cluster = new TestCluster();
  let grownFile = '';
  beforeAll(async () => {
    await cluster.up();
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: a, labels: {role: client}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: b, labels: {role: server}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: c, labels: {role: other}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: server-from-client}
spec:
  podSelector: {matchLabels: {role: server}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]
`);
    grownFile = path.join(cluster.dir, 'grown.bpf.o');
    writeFileSync(grownFile, withMakefileBuild((p) => readFileSync(p), undefined, GROWN_FLAGS));
  }, 180_000);
  afterAll(() => cluster.teardown());

  async function restartAgent(objectFile: string | undefined): Promise<void> {
    const oldPid = cluster.config().agentPid;
    process.kill(oldPid, 'SIGTERM');
    while ((() => { try { process.kill(oldPid, 0); return true; } catch { return false; } })()) await new Promise((r) => setTimeout(r, 20));
    if (objectFile) process.env.SLUICE_BPF_OBJECT = objectFile;
    try {
      await cluster.up();
    } finally {
      delete process.env.SLUICE_BPF_OBJECT;
    }
  }

  async function expectVerdictsKept(): Promise<void> {
    // An allowed peer stays allowed, and the isolated pod stays isolated from the others.
    expect((await cluster.local('probe', 'x/a', 'x/b', '--protocol', 'tcp', '--port', String(PORT + 1))).code).toBe(0);
    expect((await cluster.local('probe', 'x/c', 'x/b', '--protocol', 'tcp', '--port', String(PORT + 1), '--timeout-ms', '1000')).code).not.toBe(0);
  }

  it('keeps an open TCP connection and its conntrack entry, the pings and every verdict, through the upgrade and the downgrade', async () => {
    const pods = await cluster.podsByName();
    const [a, b] = [pods['x/a']!, pods['x/b']!];
    const bIp = b.ips.find((ip) => ip.includes('.'))!;
    await expectVerdictsKept();
    const server = cluster.spawn('ip', ['netns', 'exec', b.netns, SLUICE, 'local', 'serve', '--protocol', 'tcp', '--port', String(PORT)]);
    await new Promise((resolve) => server.stdout!.once('data', resolve));
    const client = exitOf(cluster.spawn('ip', ['netns', 'exec', a.netns, SLUICE, 'local', 'connect', bIp, String(PORT), '--hold-ms', String(HOLD_MS), '--timeout-ms', '1000']));
    const ping = exitOf(cluster.spawn('ip', ['netns', 'exec', a.netns, 'ping', '-D', '-i', String(PING_INTERVAL_S), '-c', String(PING_COUNT), '-W', '1', bIp]));
    await new Promise((r) => setTimeout(r, 1_000));
    const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as { datapath: { pinDir: string; runningVersion: string } };
    const pinDir = status.datapath.pinDir;
    const before = conntrack(pinDir);
    expect(before.created.length).toBeGreaterThan(0); // the open connection's entry

    await restartAgent(grownFile);
    const up = conntrack(pinDir);
    expect(up.id).not.toBe(before.id);
    expect(up.maxEntries).toBe(300_000);
    expect(up.created).toEqual(expect.arrayContaining(before.created)); // the same entry, copied
    const upStatus = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as typeof status;
    expect(upStatus.datapath.runningVersion).toBe(datapathVersion(readFileSync(grownFile)));
    expect(readFileSync(path.join(cluster.dir, 'agent.log'), 'utf8')).toMatch(/programs of version \w+ replaced by \w+; 6 TCX links switched\n.*maps migrated to new layouts: .*conntrack \(\d+ entries copied\)/);
    await expectVerdictsKept();

    await restartAgent(undefined); // the downgrade: the object built into dist/sluice
    const down = conntrack(pinDir);
    expect(down.id).not.toBe(up.id);
    expect(down.maxEntries).toBe(262_144);
    expect(down.created).toEqual(expect.arrayContaining(before.created));
    const downStatus = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as typeof status;
    expect(downStatus.datapath.runningVersion).toBe(status.datapath.runningVersion);
    await expectVerdictsKept();

    const held = await client;
    expect(held.code, held.out).toBe(0);
    const pinged = await ping;
    const received = Number(pinged.out.match(/(\d+) received/)?.[1] ?? 0);
    // The longest gap between two answers, from ping -D's timestamps.
    const times = [...pinged.out.matchAll(/^\[(\d+\.\d+)\].*bytes from/gm)].map((m) => Number(m[1]));
    const gapMs = Math.max(...times.slice(1).map((t, i) => (t - times[i]!) * 1000));
    console.log(`upgrade and downgrade: ${PING_COUNT - received} of ${PING_COUNT} pings lost, longest gap between answers ${gapMs.toFixed(0)} ms`);
    expect(PING_COUNT - received).toBeLessThanOrEqual(5);
  }, 180_000);
});

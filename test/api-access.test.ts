/**
 * Who may drive the agent, against a real agent and socket: with
 * --socket-group, a member that is not root reads (sluice status) but every
 * verb that changes state is refused by its peer credentials (403, counted
 * in sluice_api_refused_total, logged), while root's same request goes
 * through. And a registration must match an allocation and a real veth:
 * each mismatch is refused with its own kind, and the pod whose address or
 * veth it names keeps its traffic.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, sh, SLUICE, TestCluster } from './support/local-cluster.ts';
import { parseExposition } from './support/prometheus-text.ts';

/** A user that is not root (uid 1000 exists on this machine), in the socket's group (users, gid 100). */
const USER = ['--reuid=1000', '--regid=1000', '--groups=100'];

describe('who may drive the agent', () => {
  const cluster = new TestCluster();

  /** An API request with curl (as root, or as USER), answered with the status and the body. */
  const request = async (method: string, path: string, body: unknown, asUser: boolean) => {
    const curl = ['curl', '-s', '-o', '-', '-w', '\n%{http_code}', '--unix-socket', cluster.socket, '-X', method, '-H', 'content-type: application/json', '--data', JSON.stringify(body ?? {}), `http://agent${path}`];
    const r = asUser ? await sh('setpriv', [...USER, ...curl]) : await sh(curl[0]!, curl.slice(1));
    const lines = r.stdout.trimEnd().split('\n');
    const status = Number(lines.pop());
    return { status, body: lines.join('\n') ? (JSON.parse(lines.join('\n')) as { error?: string; kind?: string }) : {} };
  };
  const metrics = async () => {
    const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as { metrics: { address: string } };
    return parseExposition(await (await fetch(`http://${status.metrics.address}/metrics`)).text());
  };
  const refusedCount = async (route: string) =>
    (await metrics()).samples.filter((s) => s.name === 'sluice_api_refused_total' && s.labels.route === route).reduce((n, s) => n + s.value, 0);
  const probeA = () => cluster.local('probe', 'z/b', 'z/a', '--port', '80', '--timeout-ms', '2000');

  // The agent gives the socket's directory to the group: put it back as it was.
  let socketDir: { path: string; mode: number; gid: number } | null = null;

  beforeAll(async () => {
    const dir = path.dirname(cluster.socket);
    if (fs.existsSync(dir)) {
      const st = fs.statSync(dir);
      socketDir = { path: dir, mode: st.mode & 0o7777, gid: st.gid };
    }
    await cluster.up('--metrics-address', '127.0.0.1:0', '--agent-arg=--socket-group=100');
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: z}
---
apiVersion: v1
kind: Pod
metadata: {namespace: z, name: a}
---
apiVersion: v1
kind: Pod
metadata: {namespace: z, name: b}
`);
  }, 120_000);
  afterAll(async () => {
    await cluster.teardown();
    if (socketDir) {
      fs.chownSync(socketDir.path, 0, socketDir.gid);
      fs.chmodSync(socketDir.path, socketDir.mode);
    }
  });

  it('a member of the socket group reads the node, and may change nothing', async () => {
    const status = await sh('setpriv', [...USER, SLUICE, 'status', '--socket', cluster.socket, '-o', 'json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).endpoints).toBe(2);
    const endpoints = await request('GET', '/v1/endpoints', undefined, true);
    expect(endpoints.status).toBe(200);

    for (const [method, path] of [['PUT', '/v1/endpoints'], ['POST', '/v1/ipam/release'], ['POST', '/v1/ipam/allocate']] as const) {
      const before = await refusedCount(`${method} ${path}`);
      const r = await request(method, path, { containerID: 'x', ifname: 'eth0' }, true);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.body.kind).toBe('Forbidden');
      expect(r.body.error).toMatch(new RegExp(`^${method} ${path} changes the node's state: only root may call it, not uid 1000 \\(pid \\d+\\)`));
      expect(await refusedCount(`${method} ${path}`)).toBe(before + 1);
    }
    // Root's same release goes through (nothing held: nothing released).
    expect((await request('POST', '/v1/ipam/release', { containerID: 'x', ifname: 'eth0' }, false)).status).toBe(200);
    expect(fs.readFileSync(`${cluster.dir}/agent.log`, 'utf8')).toMatch(/API PUT \/v1\/endpoints refused to uid 1000 \(pid \d+\)/);
  });

  it('a registration that matches no allocation, or names another pod\'s address or veth, is refused, and that pod keeps its traffic', async () => {
    expect((await probeA()).code).toBe(0);
    const list = JSON.parse(await must('curl', ['-s', '--unix-socket', cluster.socket, 'http://agent/v1/endpoints'])) as {
      containerID: string; pod: string; ips: string[]; hostIfname: string; hostIfindex: number; hostMac: string; mac: string; netns: string;
    }[];
    const podA = list.find((e) => e.pod === 'a')!;
    const spec = { containerID: 'intruder', ifname: 'eth0', namespace: 'z', pod: 'intruder', netns: podA.netns, hostIfname: podA.hostIfname, hostIfindex: podA.hostIfindex, mac: podA.mac, hostMac: podA.hostMac, ips: podA.ips };

    const none = await request('PUT', '/v1/endpoints', spec, false);
    expect([none.status, none.body.kind]).toEqual([409, 'NoAllocation']);

    const alloc = await request('POST', '/v1/ipam/allocate', { containerID: 'intruder', ifname: 'eth0', namespace: 'z', pod: 'intruder', netns: podA.netns }, false);
    expect(alloc.status).toBe(200);
    const mine = (alloc.body as unknown as { ips: { address: string }[] }).ips.map((i) => i.address.split('/')[0]!);
    const stolen = await request('PUT', '/v1/endpoints', spec, false);
    expect([stolen.status, stolen.body.kind]).toEqual([409, 'AddressMismatch']);
    const sameVeth = await request('PUT', '/v1/endpoints', { ...spec, ips: mine }, false);
    expect([sameVeth.status, sameVeth.body.kind]).toEqual([409, 'VethInUse']);
    const noVeth = await request('PUT', '/v1/endpoints', { ...spec, ips: mine, hostIfname: 'nosuchveth0', hostIfindex: 99999 }, false);
    expect([noVeth.status, noVeth.body.kind]).toEqual([409, 'NoSuchVeth']);

    expect((await request('POST', '/v1/ipam/release', { containerID: 'intruder', ifname: 'eth0' }, false)).status).toBe(200);
    expect((await probeA()).code).toBe(0);
    const after = JSON.parse(await must('curl', ['-s', '--unix-socket', cluster.socket, 'http://agent/v1/endpoints'])) as { pod: string; hostIfname: string }[];
    expect(after.map((e) => e.pod).sort()).toEqual(['a', 'b']);
    expect(after.find((e) => e.pod === 'a')!.hostIfname).toBe(podA.hostIfname);
  });
});

/**
 * sluice-cni is hard to break: a failed ADD rolls back whatever step failed,
 * a retried ADD leaks nothing, DEL succeeds whatever is already gone (even the
 * agent), and many pods at once get unique addresses and leave nothing. The
 * cluster is dual stack, so every case covers IPv4 and IPv6.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueDel } from '../contract/del-queue.ts';
import { ADD_STEPS, FAIL_AFTER_ENV } from '../cni/fail-point.ts';
import { hostVethName } from '../cni/names.ts';
import { must, sh } from './support/local-cluster.ts';
import { CniHarness } from './support/cni-harness.ts';

const CONCURRENT_PODS = 50;

describe('sluice-cni robustness (dual stack)', () => {
  const h = new CniHarness(true);
  beforeAll(() => h.up());
  afterAll(() => h.cleanup());

  describe('ADD', () => {
    it('configures IPv4 and IPv6 on the pod and the host, and reports both', async () => {
      const ns = await h.netns();
      const cid = h.containerID();
      const result = (await h.add(cid, ns)) as { ips: { address: string; gateway: string; interface: number }[]; routes: { dst: string; gw: string }[] };
      const [v4, v6] = result.ips;
      expect(v4!.address).toMatch(/^10\.\d+\.\d+\.\d+\/32$/);
      expect(v6!.address).toMatch(/^fd5e:[0-9a-f:]+\/128$/);
      expect(result.ips.map((ip) => ip.interface)).toEqual([1, 1]);
      expect(result.routes).toEqual([
        { dst: '0.0.0.0/0', gw: v4!.gateway },
        { dst: '::/0', gw: v6!.gateway },
      ]);
      const addr6 = v6!.address.split('/')[0]!;
      expect(await must('ip', ['-n', ns, '-6', '-o', 'addr', 'show', 'eth0'])).toContain(`${addr6}/128`);
      const routes6 = await must('ip', ['-n', ns, '-6', 'route', 'show', 'dev', 'eth0']);
      expect(routes6).toContain(`${v6!.gateway} metric`);
      expect(routes6).toMatch(new RegExp(`default via ${v6!.gateway} metric \\d+ onlink`));
      const host = hostVethName(cid, 'eth0');
      expect(await must('ip', ['-6', 'route', 'show', addr6])).toContain(`dev ${host}`);
      const endpoint = await h.agent<{ endpoint: { ips: string[] } }>(`/v1/endpoints/${cid}/eth0`);
      expect(endpoint.endpoint.ips).toEqual([v4!.address.split('/')[0], addr6]);
      expect((await h.run('DEL', { containerID: cid, netns: ns })).code).toBe(0);
      expect(await h.leftovers(cid)).toEqual([]);
    });

    for (const step of ADD_STEPS) {
      it(`leaves nothing behind when it fails after step '${step}'`, async () => {
        const ns = await h.netns();
        const cid = h.containerID();
        const r = await h.run('ADD', { containerID: cid, netns: ns, env: { [FAIL_AFTER_ENV]: step } });
        expect(r.code).not.toBe(0);
        expect(r.json).toMatchObject({ code: 5 });
        expect(String(r.json!['msg'])).toContain(`after ADD step '${step}'`);
        expect(await h.leftovers(cid)).toEqual([]);
        expect(await h.podLinks(ns)).toEqual([]);
      });
    }

    it('is idempotent: a retried ADD gets the same addresses and leaks nothing', async () => {
      const ns = await h.netns();
      const cid = h.containerID();
      const first = (await h.add(cid, ns)) as { ips: { address: string }[] };
      const second = (await h.add(cid, ns)) as { ips: { address: string }[] };
      expect(second.ips).toEqual(first.ips);
      const held = (await h.leftovers(cid)).filter((x) => x.startsWith('allocation'));
      expect(held).toHaveLength(2);
      expect(await h.podLinks(ns)).toEqual(['eth0']);
      expect((await h.run('CHECK', { containerID: cid, netns: ns, conf: h.conf({ prevResult: second }) })).code).toBe(0);
      expect((await h.run('DEL', { containerID: cid, netns: ns })).code).toBe(0);
      expect(await h.leftovers(cid)).toEqual([]);
    });

    it('is not undone by a release an earlier failed attempt queued for the same attachment', async () => {
      const ns = await h.netns();
      const cid = h.containerID();
      queueDel(`${h.cluster.stateDir}/del-queue`, { containerID: cid, ifname: 'eth0', hostIfname: hostVethName(cid, 'eth0'), queuedAt: Date.now() });
      const result = await h.add(cid, ns);
      // A restarted agent drains its queue first thing.
      await h.stopAgent();
      await h.startAgent();
      const check = await h.run('CHECK', { containerID: cid, netns: ns, conf: h.conf({ prevResult: result }) });
      expect(check.code, check.stdout).toBe(0);
      expect((await h.run('DEL', { containerID: cid, netns: ns })).code).toBe(0);
    });

    it('refuses a namespace file that is not a network namespace, and the host network namespace, touching nothing', async () => {
      for (const netns of ['/proc/self/ns/mnt', '/proc/self/ns/pid', '/proc/self/ns/net', '/etc/hostname']) {
        const cid = h.containerID();
        const r = await h.run('ADD', { containerID: cid, netns });
        expect(r.code, netns).not.toBe(0);
        expect(r.json, netns).toMatchObject({ code: 4 });
        expect(String(r.json!['msg'])).toContain('CNI_NETNS');
        expect(await h.leftovers(cid)).toEqual([]);
      }
    });

    it('fails without touching an interface it does not own when the pod already has one of that name', async () => {
      const ns = await h.netns();
      await must('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other0']);
      const cid = h.containerID();
      const r = await h.run('ADD', { containerID: cid, netns: ns });
      expect(r.json).toMatchObject({ code: 5 });
      expect(String(r.json!['msg'])).toContain('EEXIST');
      expect((await h.podLinks(ns)).sort()).toEqual(['eth0', 'other0']);
      expect(await h.leftovers(cid)).toEqual([]);
    });
  });

  describe('DEL', () => {
    it('succeeds when the netns is already gone', async () => {
      const ns = await h.netns();
      const cid = h.containerID();
      await h.add(cid, ns);
      await must('ip', ['netns', 'del', ns]);
      const r = await h.run('DEL', { containerID: cid, netns: ns });
      expect(r.code, r.stdout).toBe(0);
      expect(r.stdout).toBe('');
      expect(await h.leftovers(cid)).toEqual([]);
    });

    it('succeeds when the veth is already gone', async () => {
      const ns = await h.netns();
      const cid = h.containerID();
      await h.add(cid, ns);
      await must('ip', ['link', 'del', hostVethName(cid, 'eth0')]);
      expect((await h.run('DEL', { containerID: cid, netns: ns })).code).toBe(0);
      expect(await h.leftovers(cid)).toEqual([]);
    });

    it('succeeds when the attachment never existed, with or without CNI_NETNS', async () => {
      const cid = h.containerID();
      expect((await h.run('DEL', { containerID: cid, netns: '/var/run/netns/does-not-exist' })).code).toBe(0);
      expect((await h.run('DEL', { containerID: cid, netns: '' })).code).toBe(0);
    });

    it('with the agent down deletes the veth, queues the release on disk, logs it, and the agent carries it out when it returns', async () => {
      const ns = await h.netns();
      const cid = h.containerID();
      await h.add(cid, ns);
      await h.stopAgent();
      try {
        const r = await h.run('DEL', { containerID: cid, netns: ns });
        expect(r.code, r.stdout).toBe(0);
        expect(r.stdout).toBe('');
        expect(await h.podLinks(ns)).toEqual([]);
        expect((await sh('ip', ['link', 'show', hostVethName(cid, 'eth0')])).code).not.toBe(0);
        const queued = fs.readdirSync(`${h.cluster.stateDir}/del-queue`);
        expect(queued).toHaveLength(1);
        expect(JSON.parse(fs.readFileSync(`${h.cluster.stateDir}/del-queue/${queued[0]}`, 'utf8'))).toMatchObject({ containerID: cid, ifname: 'eth0' });
        const line = h.log().at(-1)!;
        expect(line).toMatchObject({ verb: 'DEL', containerID: cid });
        expect(line.outcome).toMatch(/agent unreachable.*queued/);
      } finally {
        await h.startAgent();
      }
      expect(fs.readdirSync(`${h.cluster.stateDir}/del-queue`)).toEqual([]);
      expect(await h.leftovers(cid)).toEqual([]);
    });
  });

  it(`runs ${CONCURRENT_PODS} concurrent ADDs then ${CONCURRENT_PODS} concurrent DELs: all succeed, addresses unique, nothing left`, async () => {
    const pods = await Promise.all(Array.from({ length: CONCURRENT_PODS }, async () => ({ ns: await h.netns(), cid: h.containerID() })));
    const adds = await Promise.all(pods.map((p) => h.run('ADD', { containerID: p.cid, netns: p.ns })));
    const failedAdds = adds.filter((r) => r.code !== 0).map((r) => r.stdout);
    expect(failedAdds).toEqual([]);
    const ips = adds.flatMap((r) => (r.json!['ips'] as { address: string }[]).map((ip) => ip.address));
    expect(ips).toHaveLength(CONCURRENT_PODS * 2);
    expect(new Set(ips).size).toBe(ips.length);
    const endpoints = await h.agent<unknown[]>('/v1/endpoints');
    expect(endpoints.length).toBeGreaterThanOrEqual(CONCURRENT_PODS);

    const dels = await Promise.all(pods.map((p) => h.run('DEL', { containerID: p.cid, netns: p.ns })));
    expect(dels.filter((r) => r.code !== 0).map((r) => r.stdout)).toEqual([]);
    const left = (await Promise.all(pods.map((p) => h.leftovers(p.cid)))).flat();
    expect(left).toEqual([]);
    expect(await h.agent<unknown[]>('/v1/endpoints')).toEqual([]);
  }, 180_000);

  it('writes one log line per invocation with verb, container, duration and outcome', async () => {
    const before = h.log().length;
    const ns = await h.netns();
    const cid = h.containerID();
    await h.add(cid, ns);
    await h.run('DEL', { containerID: cid, netns: ns });
    const lines = h.log().slice(before);
    expect(lines.map((l) => [l.verb, l.containerID, l.outcome])).toEqual([
      ['ADD', cid, 'ok'],
      ['DEL', cid, 'ok'],
    ]);
    for (const l of lines) expect(l.ms).toBeGreaterThan(0);
  });
});

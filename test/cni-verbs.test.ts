/**
 * CHECK, GC and STATUS against the real kernel and agent: CHECK names each
 * drift from what ADD built, GC releases exactly what is not in
 * cni.dev/valid-attachments, STATUS answers 0, 50 or 51.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostVethName } from '../cni/names.ts';
import { must, sh } from './support/local-cluster.ts';
import { CniHarness } from './support/cni-harness.ts';

describe('CHECK', () => {
  const h = new CniHarness(true);
  beforeAll(() => h.up());
  afterAll(() => h.cleanup());

  /** ADD a pod, break one thing with `mutate`, and return CHECK's answer. */
  async function checkAfter(mutate: (p: { ns: string; host: string; v4: string; v6: string; pins: string }) => Promise<unknown>) {
    const ns = await h.netns();
    const cid = h.containerID();
    const result = await h.add(cid, ns);
    const [v4, v6] = (result['ips'] as { address: string }[]).map((ip) => ip.address);
    await mutate({ ns, host: hostVethName(cid, 'eth0'), v4: v4!, v6: v6!, pins: `${h.cluster.bpfDir}/links/${hostVethName(cid, 'eth0')}` });
    const r = await h.run('CHECK', { containerID: cid, netns: ns, conf: h.conf({ prevResult: result }) });
    expect((await h.run('DEL', { containerID: cid, netns: ns })).code).toBe(0);
    expect(await h.leftovers(cid)).toEqual([]);
    return r;
  }

  it('passes right after ADD, with no output', async () => {
    const r = await checkAfter(async () => {});
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toBe('');
  });

  const drifts: [string, (p: { ns: string; host: string; v4: string; v6: string; pins: string }) => Promise<unknown>, RegExp][] = [
    ['a pod IPv4 address removed', (p) => must('ip', ['-n', p.ns, 'addr', 'del', p.v4, 'dev', 'eth0']), /address 10\.[\d.]+\/32 is missing on eth0/],
    ['a pod IPv6 address removed', (p) => must('ip', ['-n', p.ns, 'addr', 'del', p.v6, 'dev', 'eth0']), /address fd5e:[0-9a-f:]+\/128 is missing on eth0/],
    ['the pod IPv6 default route removed', (p) => must('ip', ['-n', p.ns, '-6', 'route', 'del', 'default']), /IPv6 default route via the gateway is missing/],
    ['the host route removed', (p) => must('ip', ['route', 'del', p.v4.split('/')[0]!]), /host route 10\.[\d.]+\/32 dev lxc\w+ is missing/],
    ['the host veth down', (p) => must('ip', ['link', 'set', p.host, 'down']), /host veth lxc\w+ is down/],
    ['the pod interface MTU changed', (p) => must('ip', ['-n', p.ns, 'link', 'set', 'eth0', 'mtu', '1400']), /eth0 in \S+ has MTU 1400, the configuration says 1500/],
    ['the from-pod program detached', (p) => must('rm', [`${p.pins}_ingress`]), /no ingress \(from-pod\) program is attached/],
    ['the pod interface gone', (p) => must('ip', ['-n', p.ns, 'link', 'del', 'eth0']), /host veth lxc\w+ does not exist.*interface eth0 does not exist/],
  ];
  for (const [what, mutate, message] of drifts) {
    it(`fails with code 5 naming the drift when ${what}`, async () => {
      const r = await checkAfter(mutate);
      expect(r.code).not.toBe(0);
      expect(r.json).toMatchObject({ code: 5 });
      expect(String(r.json!['msg'])).toMatch(message);
    });
  }

  it('fails with code 5 when prevResult holds other addresses than the agent', async () => {
    const r = await checkAfter(async () => {});
    expect(r.code).toBe(0);
    const ns = await h.netns();
    const cid = h.containerID();
    const result = await h.add(cid, ns);
    (result['ips'] as { address: string }[])[0]!.address = '10.1.2.3/32';
    const bad = await h.run('CHECK', { containerID: cid, netns: ns, conf: h.conf({ prevResult: result }) });
    expect(bad.json).toMatchObject({ code: 5 });
    expect(String(bad.json!['msg'])).toContain('prevResult gives eth0 the addresses 10.1.2.3');
    await h.run('DEL', { containerID: cid, netns: ns });
  });

  it('answers code 3 for an attachment the agent does not know', async () => {
    const ns = await h.netns();
    const r = await h.run('CHECK', { containerID: h.containerID(), netns: ns });
    expect(r.json).toMatchObject({ code: 3 });
  });

  it('is refused with code 1 for a 0.3.1 configuration, which predates CHECK', async () => {
    const ns = await h.netns();
    const r = await h.run('CHECK', { containerID: h.containerID(), netns: ns, conf: h.conf({}, '0.3.1') });
    expect(r.json).toMatchObject({ code: 1 });
  });
});

describe('GC', () => {
  const h = new CniHarness(true);
  beforeAll(() => h.up());
  afterAll(() => h.cleanup());

  it('releases every attachment not listed as valid and touches neither valid ones nor veths it does not own', async () => {
    const pods = await Promise.all([0, 1, 2].map(async () => ({ ns: await h.netns(), cid: h.containerID() })));
    const results = [];
    for (const p of pods) results.push(await h.add(p.cid, p.ns));
    // A veth named like ours but made by someone else, and an attachment whose veth alone survived.
    const decoy = `lxc${h.cluster.id}zz`;
    await must('ip', ['link', 'add', decoy, 'type', 'veth', 'peer', 'name', `${decoy}p`]);
    try {
      const [keep, drop1, drop2] = pods;
      const r = await h.run('GC', { conf: h.conf({ 'cni.dev/valid-attachments': [{ containerID: keep!.cid, ifname: 'eth0' }] }) });
      expect(r.code, r.stdout).toBe(0);
      expect(r.stdout).toBe('');
      expect(await h.leftovers(drop1!.cid)).toEqual([]);
      expect(await h.leftovers(drop2!.cid)).toEqual([]);
      expect(await h.podLinks(drop1!.ns)).toEqual([]);
      const kept = await h.run('CHECK', { containerID: keep!.cid, netns: keep!.ns, conf: h.conf({ prevResult: results[0] }) });
      expect(kept.code, kept.stdout).toBe(0);
      expect((await sh('ip', ['link', 'show', decoy])).code).toBe(0);
      expect(h.log().filter((l) => l.verb === 'GC').at(-1)!.outcome).toMatch(/GC kept 1 valid attachment\(s\); released 2 at the agent/);

      const all = await h.run('GC', { conf: h.conf({ 'cni.dev/valid-attachments': [] }) });
      expect(all.code).toBe(0);
      expect(await h.leftovers(keep!.cid)).toEqual([]);
      expect((await sh('ip', ['link', 'show', decoy])).code).toBe(0);
    } finally {
      await sh('ip', ['link', 'del', decoy]);
    }
  });

  it('removes a marked host veth the agent no longer knows of', async () => {
    const ns = await h.netns();
    const cid = h.containerID();
    await h.add(cid, ns);
    // The agent forgets the attachment (as after a lost DEL) but the veth stays.
    const { agentRequest } = await import('../contract/client.ts');
    await agentRequest(h.cluster.socket, 'DELETE', `/v1/endpoints/${cid}/eth0`);
    expect(await h.leftovers(cid)).toContain(`host veth ${hostVethName(cid, 'eth0')}`);
    expect((await h.run('GC', { conf: h.conf({ 'cni.dev/valid-attachments': [] }) })).code).toBe(0);
    expect(await h.leftovers(cid)).toEqual([]);
  });

  it('is refused without cni.dev/valid-attachments (code 7) and for a 1.0.0 configuration (code 1)', async () => {
    expect((await h.run('GC', { conf: h.conf() })).json).toMatchObject({ code: 7 });
    expect((await h.run('GC', { conf: h.conf({ 'cni.dev/valid-attachments': [] }, '1.0.0') })).json).toMatchObject({ code: 1 });
  });
});

describe('STATUS', () => {
  // A /30 holds one pod address: the second pod exhausts the pool.
  const h = new CniHarness(false);
  beforeAll(() => h.up([h.cluster.podCIDR.replace(/\.0\/24$/, '.0/30')]));
  afterAll(() => h.cleanup());

  it('succeeds while the agent is up and the pool has room, answers 51 once it is exhausted, and 50 while the agent is down', async () => {
    const ok = await h.run('STATUS');
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toBe('');

    const ns = await h.netns();
    const cid = h.containerID();
    await h.add(cid, ns);
    const full = await h.run('STATUS');
    expect(full.json).toMatchObject({ code: 51 });
    expect(String(full.json!['msg'])).toMatch(/exhausted/);
    const ns2 = await h.netns();
    const cid2 = h.containerID();
    const refused = await h.run('ADD', { containerID: cid2, netns: ns2 });
    expect(refused.json).toMatchObject({ code: 11 });
    expect(await h.leftovers(cid2)).toEqual([]);

    await h.stopAgent();
    try {
      const down = await h.run('STATUS');
      expect(down.json).toMatchObject({ code: 50 });
      expect(String(down.json!['msg'])).toMatch(/cannot reach the sluice agent/);
    } finally {
      await h.startAgent();
    }
    expect((await h.run('DEL', { containerID: cid, netns: ns })).code).toBe(0);
    expect((await h.run('STATUS')).code).toBe(0);
  });

  it('is refused with code 1 for a 1.0.0 configuration, which predates STATUS', async () => {
    expect((await h.run('STATUS', { conf: h.conf({}, '1.0.0') })).json).toMatchObject({ code: 1 });
  });
});

/**
 * The vertical slice, end to end: an agent, pods made by the real sluice-cni
 * executable, and traffic carried by the eBPF datapath.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, sh, TestCluster } from './support/local-cluster.ts';

/** iptables-save prints timestamps in comments; everything else must match. */
async function firewallRules(): Promise<string> {
  const ipt = (await sh('iptables-save', [])).stdout.split('\n').filter((l) => !l.startsWith('#')).join('\n');
  const nft = (await sh('nft', ['list', 'ruleset'])).stdout;
  return `${ipt}\n---\n${nft}`;
}

describe('pods on one node talk through the eBPF datapath', () => {
  const cluster = new TestCluster();
  const pods = ['x/a', 'x/b', 'y/c'];
  let rulesBefore = '';

  beforeAll(async () => {
    rulesBefore = await firewallRules();
    await cluster.up();
    for (const p of pods) await must('dist/sluice', ['local', '--dir', cluster.dir, 'pod', 'create', p, '--label', `app=${p.split('/')[1]}`]);
  });
  afterAll(() => cluster.teardown());

  it('gives every pod an address from the pod CIDR and a netns that ip netns exec can enter', async () => {
    const list = await cluster.pods();
    expect(list.map((p) => `${p.metadata.namespace}/${p.metadata.name}`)).toEqual(pods);
    const prefix = cluster.podCIDR.split('.').slice(0, 3).join('.');
    for (const p of list) {
      expect(p.status.podIP.startsWith(`${prefix}.`)).toBe(true);
      const addr = await must('ip', ['netns', 'exec', p.metadata.annotations['sluice.dev/netns']!, 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
      expect(addr).toContain(`${p.status.podIP}/32`);
    }
    expect(new Set(list.map((p) => p.status.podIP)).size).toBe(3);
  });

  it('carries ICMP, TCP and UDP between every pair of pods by redirect, and from the host', async () => {
    const before = (await cluster.status()).counters;
    const failures: string[] = [];
    for (const from of pods) {
      for (const to of pods) {
        if (from === to) continue;
        for (const protocol of ['icmp', 'tcp', 'udp']) {
          const r = await cluster.local('probe', from, to, '--protocol', protocol, '--port', '8080', '--timeout-ms', '3000');
          if (r.code !== 0) failures.push(`${from} -> ${to} ${protocol}`);
        }
      }
    }
    for (const p of await cluster.pods()) {
      const r = await sh('ping', ['-c', '1', '-W', '2', p.status.podIP]);
      if (r.code !== 0) failures.push(`host -> ${p.metadata.name} icmp`);
    }
    expect(failures).toEqual([]);
    const after = (await cluster.status()).counters;
    // 6 pairs x 3 protocols, each at least a request and a reply, all redirected pod to pod.
    expect(after.REDIRECT_LOCAL!.packets - before.REDIRECT_LOCAL!.packets).toBeGreaterThanOrEqual(36);
    expect(after.TO_POD!.packets).toBeGreaterThan(before.TO_POD!.packets);
    expect(after.ARP_REPLY!.packets).toBeGreaterThan(0);
  });

  it('lets a pod reach the host', async () => {
    const hostIp = (await must('ip', ['-4', '-o', 'route', 'get', '1.1.1.1'])).match(/src (\S+)/)![1]!;
    const ns = (await cluster.pods())[0]!.metadata.annotations['sluice.dev/netns']!;
    await must('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '2', hostIp]);
  });

  it('adds nothing to iptables or nftables', async () => {
    expect(await firewallRules()).toBe(rulesBefore);
  });

  it('leaves no netns, veth, pin, allocation or process behind once pods are deleted and the cluster is down', async () => {
    const endpoints = JSON.parse(await must('dist/sluice', ['endpoints', '--socket', cluster.socket, '-o', 'json'])) as { hostIfname: string }[];
    expect(endpoints).toHaveLength(3);
    for (const p of pods) await must('dist/sluice', ['local', '--dir', cluster.dir, 'pod', 'delete', p]);
    expect(cluster.netnsLeft()).toEqual([]);
    const links = await must('ip', ['-o', 'link', 'show']);
    for (const e of endpoints) expect(links).not.toContain(e.hostIfname);
    expect(fs.readdirSync(`${cluster.bpfDir}/links`)).toEqual([]);
    const status = await cluster.status();
    expect(status.endpoints).toBe(0);
    const pid = cluster.config().agentPid;
    await must('dist/sluice', ['local', '--dir', cluster.dir, 'down']);
    expect(fs.existsSync(cluster.bpfDir)).toBe(false);
    expect(fs.existsSync(cluster.socket)).toBe(false);
    expect(fs.existsSync(cluster.stateDir)).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
  });
});

/**
 * IPAM against the kernel: pods made by the real CNI plugin through
 * `sluice local`, the agent SIGKILLed while they are being created, then the
 * addresses inside the pods' network namespaces compared with the store.
 * And `sluice local up` with two pod CIDRs gives the agent a pool per family.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { agentRequest } from '../contract/client.ts';
import { parseCidr } from '../lib/cidr.ts';
import type { AllocateResponse, IpamResponse, ReconcileResponse } from '../contract/api-types.ts';
import { must, sh, SLUICE, TestCluster } from './support/local-cluster.ts';

const PODS_BEFORE_CRASH = 3;
const PODS_DURING_CRASH = 10;
const KILL_AFTER_CREATED = 2;

const GONE_TIMEOUT_MS = 10_000;

/**
 * Resolves true once the PID no longer exists. The agent of `local up` is not
 * our child: init reaps it, and until then `local up` would take the zombie
 * for a live agent and not restart it.
 */
async function gone(pid: number): Promise<boolean> {
  const deadline = Date.now() + GONE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!fs.existsSync(`/proc/${pid}`)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** IPv4 address of eth0 in each of the cluster's netns, read from the kernel. */
async function kernelAddresses(cluster: TestCluster): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const ns of cluster.netnsLeft()) {
    const r = await sh('ip', ['-n', ns, '-j', '-4', 'addr', 'show', 'dev', 'eth0']);
    const links = r.code === 0 ? (JSON.parse(r.stdout || '[]') as { addr_info: { local: string }[] }[]) : [];
    out.set(ns, links.flatMap((l) => l.addr_info.map((a) => a.local)));
  }
  return out;
}

describe('IPAM and the pods in the kernel', () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.teardown();
    cluster = undefined;
  });

  it('after SIGKILL during pod creation, every pod netns address is held by its own container, none twice; a netns that vanishes without DEL loses its address and endpoint once its pod is gone', async () => {
    const c = new TestCluster();
    cluster = c;
    await c.up();
    for (let i = 0; i < PODS_BEFORE_CRASH; i++) await must(SLUICE, ['local', '--dir', c.dir, 'pod', 'create', `x/before${i}`]);

    const pid = c.config().agentPid;
    let created = 0;
    const creates = Array.from({ length: PODS_DURING_CRASH }, (_, i) =>
      c.local('pod', 'create', `x/during${i}`).then((r) => {
        if (r.code === 0 && ++created === KILL_AFTER_CREATED) process.kill(pid, 'SIGKILL');
        return r;
      }),
    );
    const results = await Promise.all(creates);
    expect(await gone(pid), 'the agent was killed').toBe(true);
    expect(results.some((r) => r.code !== 0), 'some pod creations were cut by the kill').toBe(true);

    await c.up(); // starts the cluster's agent again on the same store
    const kernel = await kernelAddresses(c);
    const pods = await c.pods();
    const containerOfNetns = new Map(
      pods.map((p) => [p.metadata.annotations['sluice.dev/netns']!, p.metadata.annotations['sluice.dev/container-id']!]),
    );
    const before = await agentRequest<IpamResponse>(c.socket, 'GET', '/v1/ipam');
    const holder = new Map(before.allocations.map((a) => [a.ip, a.containerID]));

    const kernelIps = [...kernel.values()].flat();
    expect(kernelIps.length, 'every surviving pod has its address').toBe(kernel.size);
    expect(new Set(kernelIps).size, 'no address in two pods').toBe(kernelIps.length);
    for (const [ns, ips] of kernel) {
      for (const ip of ips) expect(holder.get(ip), `${ip} in ${ns} is held by that pod's container`).toBe(containerOfNetns.get(ns));
    }
    expect(kernel.size).toBeGreaterThanOrEqual(PODS_BEFORE_CRASH + KILL_AFTER_CREATED);

    // Whatever failed ADDs left behind (no endpoint, no netns) goes; the pods keep theirs.
    const rec = await agentRequest<ReconcileResponse>(c.socket, 'POST', '/v1/ipam/reconcile', { graceMs: 0 });
    expect(rec.failed).toEqual([]);
    const after = await agentRequest<IpamResponse>(c.socket, 'GET', '/v1/ipam');
    expect(after.allocations.map((a) => a.ip).sort()).toEqual([...kernelIps].sort());
    expect(after.pools[0]!.used).toBe(kernelIps.length);

    // A container that vanishes without a DEL: its netns goes. While the datastore shows its pod running
    // here, the address stays (the agent may not see every runtime's netns); once the pod is gone, it follows.
    const [victimNs, [victimIp]] = [...kernel.entries()][0]!;
    await must('ip', ['netns', 'del', victimNs]);
    const kept = await agentRequest<ReconcileResponse>(c.socket, 'POST', '/v1/ipam/reconcile', { graceMs: 0 });
    expect(kept.released).toEqual([]);
    const victim = pods.find((p) => p.metadata.annotations['sluice.dev/netns'] === victimNs)!;
    fs.rmSync(path.join(c.dir, 'datastore', 'pods', victim.metadata.namespace, `${victim.metadata.name}.yaml`));
    let rec2 = kept;
    // The agent notices the datastore change within its watch period.
    for (let i = 0; i < 50 && rec2.released.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      rec2 = await agentRequest<ReconcileResponse>(c.socket, 'POST', '/v1/ipam/reconcile', { graceMs: 0 });
    }
    expect(rec2.released).toMatchObject([{ containerID: containerOfNetns.get(victimNs), ips: [victimIp], reason: 'netns-gone' }]);
    expect(rec2.kept).toBe(kernel.size - 1);
    const endpoints = await agentRequest<{ containerID: string }[]>(c.socket, 'GET', '/v1/endpoints');
    expect(endpoints.map((e) => e.containerID)).not.toContain(containerOfNetns.get(victimNs));
    expect(endpoints).toHaveLength(kernel.size - 1);
  });

  it('local up with an IPv4 and an IPv6 pod CIDR gives each pod one address of each family, shown by sluice ipam -o json', async () => {
    const c = new TestCluster();
    cluster = c;
    // Canonical text, as the agent prints it (a group like 0a1b prints as a1b).
    const v6 = parseCidr(`fd00:${c.id.slice(0, 4)}::/120`).text;
    await must(SLUICE, ['local', 'up', '--dir', c.dir, '--name', c.name, '--socket', c.socket, '--state-dir', c.stateDir, '--bpf-dir', c.bpfDir, '--pod-cidr', c.podCIDR, '--pod-cidr', v6]);

    const alloc = await agentRequest<AllocateResponse>(c.socket, 'POST', '/v1/ipam/allocate', { containerID: 'ds1', ifname: 'eth0', namespace: 'x', pod: 'a' });
    const base4 = c.podCIDR.replace(/0\/24$/, '');
    expect(alloc.ips).toEqual([
      { address: `${base4}2/32`, gateway: `${base4}1`, family: 4 },
      { address: `${v6.replace('/120', '')}2/128`, gateway: `${v6.replace('/120', '')}1`, family: 6 },
    ]);

    const json = JSON.parse(await must(SLUICE, ['ipam', '-o', 'json', '--socket', c.socket])) as IpamResponse;
    expect(json.pools.map(({ cidr, size, used }) => ({ cidr, size, used }))).toEqual([
      { cidr: c.podCIDR, size: 253, used: 1 },
      { cidr: v6, size: 254, used: 1 },
    ]);
    expect(json.allocations.map(({ containerID, ifname, ip, namespace, pod }) => ({ containerID, ifname, ip, namespace, pod }))).toEqual([
      { containerID: 'ds1', ifname: 'eth0', ip: `${base4}2`, namespace: 'x', pod: 'a' },
      { containerID: 'ds1', ifname: 'eth0', ip: `${v6.replace('/120', '')}2`, namespace: 'x', pod: 'a' },
    ]);
    const table = await must(SLUICE, ['ipam', '--socket', c.socket]);
    expect(table).toMatch(new RegExp(`${v6.replace('/120', '').replace(/:/g, ':')}2\\s+x/a\\s+ds1\\s+eth0`));
  });
});

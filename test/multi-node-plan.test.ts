/**
 * The pure side of many nodes: which routes a node plans from the Node
 * objects, how a local cluster splits its pod CIDR and picks addresses, and
 * where a new pod goes.
 */
import { describe, expect, it } from 'vitest';
import { clusterNodes as nodesOfObjects, nodeAddresses } from '../agent/datastore/cluster-view.ts';
import type { KubeObject } from '../agent/datastore/local.ts';
import { planRoutes } from '../agent/routing/plan.ts';
import { vtepMac } from '../agent/routing/vxlan.ts';
import type { ClusterConfig } from '../cli/local/cluster.ts';
import { clusterNodes, nodeObject, planNodes, scheduleNode, splitPodCIDR, underlayCIDR } from '../cli/local/nodes.ts';

const NODES = [
  { name: 'n1', podCIDRs: ['10.244.0.0/24', 'fd00:10:244::/64'], internalIPs: ['172.20.0.1'] },
  { name: 'n2', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'], internalIPs: ['172.20.0.2'] },
  { name: 'n3', podCIDRs: ['10.244.2.0/24'], internalIPs: [] },
];

describe('routing plan', () => {
  it("routes each other node's pod CIDR via its InternalIP in native mode, and says why it cannot route the rest", () => {
    const plan = planRoutes(NODES, 'n1', 'native');
    expect(plan.localAddress).toBe('172.20.0.1');
    expect(plan.routes).toEqual([{ node: 'n2', dst: '10.244.1.0/24', gateway: '172.20.0.2' }]);
    expect(plan.skipped).toEqual([
      'n2 fd00:10:244:1::/64: the node has no IPv6 InternalIP',
      'n3 10.244.2.0/24: the node has no IPv4 InternalIP',
    ]);
  });

  it("routes each other node's pod CIDRs, both families, to its VTEP in VXLAN mode", () => {
    const plan = planRoutes(NODES.slice(0, 2), 'n2', 'vxlan');
    const vtep = { mac: '02:53:ac:14:00:01', remote: '172.20.0.1' };
    expect(plan.routes).toEqual([
      { node: 'n1', dst: '10.244.0.0/24', gateway: '10.244.0.0', vtep },
      { node: 'n1', dst: 'fd00:10:244::/64', gateway: 'fd00:10:244::', vtep },
    ]);
  });

  it('plans nothing for a node that has no address of its own in VXLAN mode, and never a route over its own pod CIDR', () => {
    expect(planRoutes(NODES, 'n3', 'vxlan').routes).toEqual([]);
    const clash = planRoutes([...NODES, { name: 'n4', podCIDRs: ['10.244.0.128/25'], internalIPs: ['172.20.0.4'] }], 'n1', 'native');
    expect(clash.skipped).toContain("n4 10.244.0.128/25: overlaps this node's pod CIDR 10.244.0.0/24");
  });

  it('derives a VTEP MAC from the IPv4 underlay address', () => {
    expect(vtepMac('172.23.164.2')).toBe('02:53:ac:17:a4:02');
    expect(() => vtepMac('fd00::1')).toThrow(/IPv4/);
  });

  it('reads pod CIDRs and InternalIPs from Node objects; every InternalIP is a node address for the ipcache', () => {
    const node = nodeObject({ name: 'node-2', netns: 'c--node-2', podCIDRs: ['10.1.1.0/24'], address: '172.16.0.2', socket: '', stateDir: '', bpfDir: '', cniConfFile: '', agentPid: 0, logFile: '' });
    const objects = { pods: [], namespaces: [], networkPolicies: [], nodes: [node] };
    expect(nodesOfObjects(objects)).toEqual([{ name: 'node-2', podCIDRs: ['10.1.1.0/24'], internalIPs: ['172.16.0.2'] }]);
    expect(nodeAddresses(objects)).toEqual(['172.16.0.2']);
  });
});

describe('local cluster nodes', () => {
  it('splits a cluster pod CIDR into /24s per node, or halves and quarters when it is smaller', () => {
    expect(splitPodCIDR('10.244.0.0/16', 3)).toEqual(['10.244.0.0/24', '10.244.1.0/24', '10.244.2.0/24']);
    expect(splitPodCIDR('10.200.7.0/24', 2)).toEqual(['10.200.7.0/25', '10.200.7.128/25']);
    expect(splitPodCIDR('10.200.7.0/24', 3)).toEqual(['10.200.7.0/26', '10.200.7.64/26', '10.200.7.128/26']);
    expect(splitPodCIDR('fd00:10::/56', 2)).toEqual(['fd00:10::/64', 'fd00:10:0:1::/64']);
    expect(() => splitPodCIDR('10.0.0.0/29', 4)).toThrow(/too small/);
  });

  it('gives every cluster its own underlay and every node its own namespace, agent paths and address', () => {
    expect(underlayCIDR('a', '/tmp/a')).toMatch(/^172\.(1[6-9]|2\d|3[01])\.\d+\.0\/24$/);
    expect(underlayCIDR('a', '/tmp/a')).not.toBe(underlayCIDR('b', '/tmp/b'));
    const plan = planNodes(
      { name: 'c', dir: '/tmp/c', nodePrefix: 'node', podCIDRs: ['10.9.0.0/16'], socket: '/run/sluice/c.sock', stateDir: '/tmp/c-state', bpfDir: '/sys/fs/bpf/c' },
      2,
      'vxlan',
    );
    const [one, two] = plan.nodes;
    expect(two).toMatchObject({
      name: 'node-2',
      netns: 'c--node-2',
      podCIDRs: ['10.9.1.0/24'],
      socket: '/run/sluice/c-node-2.sock',
      stateDir: '/tmp/c-state/node-2',
      bpfDir: '/sys/fs/bpf/c/node-2',
      cniConfFile: '/tmp/c/cni/net.d/node-2/10-sluice.conflist',
    });
    expect(one!.address!.split('.').slice(0, 3)).toEqual(two!.address!.split('.').slice(0, 3));
    expect(plan.underlay.netns).toBe('c--underlay');
    expect(() => planNodes({ ...plan.nodes[0]!, name: 'c', dir: '/tmp/c', nodePrefix: 'n', podCIDRs: ['10.9.0.0/16'] }, 1, 'native')).toThrow(/2 to/);
  });

  it('puts a pod on the node it names, else on the node with the fewest pods; a one-node cluster takes every pod', () => {
    const plan = planNodes({ name: 'c', dir: '/tmp/c', nodePrefix: 'node', podCIDRs: ['10.9.0.0/16'], socket: '/s.sock', stateDir: '/st', bpfDir: '/b' }, 2, 'native');
    const config = { nodes: plan.nodes } as ClusterConfig;
    const on = (node: string): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { nodeName: node } });
    expect(scheduleNode(config, undefined, []).name).toBe('node-1');
    expect(scheduleNode(config, undefined, [on('node-1')]).name).toBe('node-2');
    expect(scheduleNode(config, 'node-1', [on('node-1')]).name).toBe('node-1');
    expect(() => scheduleNode(config, 'node-9', [])).toThrow(/node node-9 does not exist \(the cluster has node-1, node-2\)/);
    const single = { nodeName: 'host', podCIDRs: ['10.0.0.0/24'], socket: '/s', stateDir: '/st', bpfDir: '/b', cniConfFile: '/c', agentPid: 1, dir: '/d' } as ClusterConfig;
    expect(clusterNodes(single)).toHaveLength(1);
    expect(scheduleNode(single, 'elsewhere', []).name).toBe('host');
  });
});

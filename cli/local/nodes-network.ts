/**
 * Builds and removes the network of a multi-node local cluster: the underlay
 * (a Linux bridge in a network namespace of its own) and one network
 * namespace per node, attached to the bridge by a veth pair whose node end
 * holds the node's address. Nodes forward (ip_forward) and do not filter by
 * reverse path, both set inside the node namespaces only: the host's sysctls
 * are never touched.
 *
 * Processes that belong to a node (its agent, the CNI plugin for its pods)
 * enter only its network namespace (`nsenter --net`), never `ip netns exec`,
 * which would also give them a private mount namespace with a fresh /sys and
 * hide the host's bpffs where every agent pins its datapath.
 */
import fs from 'node:fs';
import path from 'node:path';
import { NETNS_DIR } from './cluster.ts';
import { NODE_UNDERLAY_IFNAME, nodeNetnsPath } from './nodes.ts';
import type { LocalNode, Underlay } from './cluster.ts';
import { run } from './run.ts';

/** Sysctls every node namespace gets: a node routes pod traffic, and pod sources arrive on several interfaces. */
const NODE_SYSCTLS: Record<string, string> = {
  'net/ipv4/ip_forward': '1',
  'net/ipv6/conf/all/forwarding': '1',
  'net/ipv4/conf/all/rp_filter': '0',
  'net/ipv4/conf/default/rp_filter': '0',
};

/** The command prefix that runs a program in the node's network namespace only (nothing for the host node). */
export function inNodeNetns(node: LocalNode): string[] {
  const netns = nodeNetnsPath(node);
  return netns ? ['nsenter', `--net=${netns}`] : [];
}

/** Writes sysctls of the namespace at `netnsPath` (via nsenter, so /proc/sys/net is that namespace's). */
async function setNetnsSysctls(netnsPath: string, sysctls: Record<string, string>): Promise<void> {
  const script = Object.entries(sysctls)
    .map(([key, value]) => `echo ${value} > /proc/sys/${key}`)
    .join(' && ');
  await run('nsenter', [`--net=${netnsPath}`, 'sh', '-c', script]);
}

function underlayIfname(index: number): string {
  return `n${index}`;
}

/** Creates the underlay namespace and its bridge. */
export async function createUnderlay(underlay: Underlay): Promise<void> {
  await run('ip', ['netns', 'add', underlay.netns]);
  await run('ip', ['-n', underlay.netns, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', underlay.netns, 'link', 'add', underlay.bridge, 'type', 'bridge']);
  await run('ip', ['-n', underlay.netns, 'link', 'set', underlay.bridge, 'up']);
}

/** Creates node `index` (from 1): its namespace, sysctls, and its veth to the bridge with the node's address. */
export async function createNodeNetwork(node: LocalNode, index: number, underlay: Underlay): Promise<void> {
  if (!node.netns || !node.address) throw new Error(`node ${node.name} has no network namespace or address to create`);
  const prefixLength = underlay.cidr.split('/')[1]!;
  await run('ip', ['netns', 'add', node.netns]);
  // Before any interface exists, so that every interface inherits the defaults.
  await setNetnsSysctls(nodeNetnsPath(node)!, NODE_SYSCTLS);
  await run('ip', ['-n', node.netns, 'link', 'set', 'lo', 'up']);
  const bridgePort = underlayIfname(index);
  await run('ip', ['-n', underlay.netns, 'link', 'add', bridgePort, 'type', 'veth', 'peer', 'name', NODE_UNDERLAY_IFNAME, 'netns', node.netns]);
  await run('ip', ['-n', underlay.netns, 'link', 'set', bridgePort, 'master', underlay.bridge, 'up']);
  await run('ip', ['-n', node.netns, 'addr', 'add', `${node.address}/${prefixLength}`, 'dev', NODE_UNDERLAY_IFNAME]);
  await run('ip', ['-n', node.netns, 'link', 'set', NODE_UNDERLAY_IFNAME, 'up']);
}

/** Removes a namespace (and with it every interface in it: veths, the VXLAN device, the bridge); no-op when gone. */
export async function removeNetns(name: string): Promise<void> {
  if (fs.existsSync(path.join(NETNS_DIR, name))) await run('ip', ['netns', 'del', name]);
}

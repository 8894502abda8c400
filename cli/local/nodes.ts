/**
 * The nodes of a local cluster. One node (the default) is this host itself,
 * described by cluster.json's top-level fields, exactly as before nodes
 * existed. With `up --nodes N` (N ≥ 2) each node is a network namespace with
 * its own agent (state dir, socket, bpffs pin dir, CNI conflist), its own
 * slice of the cluster's pod CIDRs and an address on an underlay bridge that
 * joins them. Pure: names, addresses and CIDRs; nodes-network.ts builds them.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { bigIntToIp, parseCidr } from '../../lib/cidr.ts';
import type { KubeObject } from '../../agent/datastore/local.ts';
import type { RoutingMode } from '../../agent/routing/plan.ts';
import { NETNS_DIR, type ClusterConfig, type LocalNode, type Underlay } from './cluster.ts';

/** Node names are this prefix (or `up --node-name`) followed by -1, -2, ... */
export const DEFAULT_NODE_PREFIX = 'node';
/** Most nodes a local cluster may have: one underlay /24. */
export const MAX_NODES = 253;
/** Per-node pod CIDR prefix length when the cluster CIDR is large enough (as kube-controller-manager's --node-cidr-mask-size). */
export const NODE_CIDR_MASK_V4 = 24;
/** The same for IPv6. */
export const NODE_CIDR_MASK_V6 = 64;
/** The node's interface on the underlay, inside its namespace. */
export const NODE_UNDERLAY_IFNAME = 'eth0';

/** What `up --nodes N` decided: the nodes and the underlay between them. */
export interface NodesPlan {
  nodes: LocalNode[];
  underlay: Underlay;
  routing: RoutingMode;
}

/** The paths and names the nodes are derived from (those of a one-node cluster). */
export interface NodesBase {
  name: string;
  dir: string;
  nodePrefix: string;
  podCIDRs: string[];
  socket: string;
  stateDir: string;
  bpfDir: string;
}

/** Splits a cluster pod CIDR into `count` node CIDRs: /24 (IPv6 /64) each, or smaller when the CIDR is too small for that. */
export function splitPodCIDR(cidr: string, count: number): string[] {
  const c = parseCidr(cidr);
  const bits = c.family === 4 ? 32 : 128;
  const needBits = Math.ceil(Math.log2(Math.max(count, 1)));
  const mask = Math.max(c.family === 4 ? NODE_CIDR_MASK_V4 : NODE_CIDR_MASK_V6, c.prefixLength + needBits);
  // IPAM needs room for network, gateway, broadcast and at least one pod.
  if (mask > bits - 2) throw new Error(`pod CIDR ${c.text} is too small for ${count} nodes: give a shorter prefix`);
  const step = 1n << BigInt(bits - mask);
  return Array.from({ length: count }, (_, i) => `${bigIntToIp(c.base + step * BigInt(i), c.family)}/${mask}`);
}

/** The underlay /24 of a cluster: inside 172.16.0.0/12, derived from its name and directory so that clusters differ. */
export function underlayCIDR(clusterName: string, dir: string): string {
  const h = createHash('sha256').update(`${clusterName}\0${dir}`).digest();
  return `172.${16 + (h[0]! % 16)}.${h[1]!}.0/24`;
}

function underlayAddress(cidr: string, index: number): string {
  const c = parseCidr(cidr);
  return bigIntToIp(c.base + BigInt(index), 4);
}

function nodeSocket(socket: string, node: string): string {
  return path.join(path.dirname(socket), `${path.basename(socket, '.sock')}-${node}.sock`);
}

/** The nodes of `up --nodes N`, with every name, path, address and pod CIDR. */
export function planNodes(base: NodesBase, count: number, routing: RoutingMode): NodesPlan {
  if (!Number.isInteger(count) || count < 2 || count > MAX_NODES) throw new Error(`a multi-node cluster has 2 to ${MAX_NODES} nodes, not ${count}`);
  const slices = base.podCIDRs.map((cidr) => splitPodCIDR(cidr, count));
  const underlay: Underlay = { netns: `${base.name}--underlay`, bridge: 'br0', cidr: underlayCIDR(base.name, base.dir) };
  const nodes = Array.from({ length: count }, (_, i): LocalNode => {
    const name = `${base.nodePrefix}-${i + 1}`;
    return {
      name,
      // '--' never occurs in a pod's netns name (<cluster>-<namespace>-<pod>: DNS labels start with a letter or digit).
      netns: `${base.name}--${name}`,
      podCIDRs: slices.map((s) => s[i]!),
      address: underlayAddress(underlay.cidr, i + 1),
      socket: nodeSocket(base.socket, name),
      stateDir: path.join(base.stateDir, name),
      bpfDir: path.join(base.bpfDir, name),
      cniConfFile: path.join(base.dir, 'cni', 'net.d', name, '10-sluice.conflist'),
      agentPid: 0,
      logFile: path.join(base.dir, `agent-${name}.log`),
    };
  });
  return { nodes, underlay, routing };
}

/** Every node of the cluster: its `nodes`, or the host as the one node (top-level fields of cluster.json). */
export function clusterNodes(config: ClusterConfig): LocalNode[] {
  if (config.nodes?.length) return config.nodes;
  return [
    {
      name: config.nodeName,
      podCIDRs: config.podCIDRs,
      socket: config.socket,
      stateDir: config.stateDir,
      bpfDir: config.bpfDir,
      cniConfFile: config.cniConfFile,
      agentPid: config.agentPid,
      logFile: path.join(config.dir, 'agent.log'),
    },
  ];
}

/** The node called `name`; throws a message listing the nodes when there is none. */
export function nodeByName(config: ClusterConfig, name: string): LocalNode {
  const nodes = clusterNodes(config);
  const node = nodes.find((n) => n.name === name);
  if (!node) throw new Error(`node ${name} does not exist (the cluster has ${nodes.map((n) => n.name).join(', ')})`);
  return node;
}

/** The node a pod runs on (its spec.nodeName), the first node when it names none the cluster has (one-node clusters). */
export function nodeOfPod(config: ClusterConfig, pod: KubeObject): LocalNode {
  const nodes = clusterNodes(config);
  const name = (pod.spec as { nodeName?: string } | undefined)?.nodeName;
  return nodes.find((n) => n.name === name) ?? nodes[0]!;
}

/**
 * Where a new pod goes: the node its manifest names (a one-node cluster puts
 * every pod on its node, as it always has), else the node with the fewest
 * pods, the first of them on a tie, as a scheduler spreads them.
 */
export function scheduleNode(config: ClusterConfig, requested: string | undefined, pods: KubeObject[]): LocalNode {
  const nodes = clusterNodes(config);
  if (nodes.length === 1) return nodes[0]!;
  if (requested) return nodeByName(config, requested);
  const load = (n: LocalNode) => pods.filter((p) => (p.spec as { nodeName?: string } | undefined)?.nodeName === n.name).length;
  return nodes.reduce((best, n) => (load(n) < load(best) ? n : best));
}

/** The path of a node's network namespace, or undefined for the host node. */
export function nodeNetnsPath(node: LocalNode): string | undefined {
  return node.netns ? path.join(NETNS_DIR, node.netns) : undefined;
}

/** The Node object of a local node, as `get nodes -o json` lists it. */
export function nodeObject(node: LocalNode): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: node.name,
      labels: { 'kubernetes.io/hostname': node.name },
      ...(node.netns ? { annotations: { 'sluice.dev/netns': node.netns } } : {}),
    },
    spec: { podCIDR: node.podCIDRs[0], podCIDRs: node.podCIDRs },
    ...(node.address
      ? { status: { addresses: [{ type: 'InternalIP', address: node.address }, { type: 'Hostname', address: node.name }] } }
      : {}),
  };
}

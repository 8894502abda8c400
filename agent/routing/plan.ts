/**
 * Which routes a node needs to reach the pods of every other node, from the
 * Node objects alone (spec.podCIDRs and the InternalIP of status.addresses).
 * Pure: agent/routing/routing.ts puts the plan into the kernel.
 *
 * Native routing: each remote pod CIDR via that node's InternalIP, the
 * underlay routes pod addresses as they are. VXLAN: each remote pod CIDR via
 * a next hop on the VXLAN device (the CIDR's network address, never a real
 * host) whose neighbour entry is the remote node's VTEP MAC, which the
 * device's forwarding table sends to the remote node's InternalIP.
 */
import { cidrContains, parseCidr } from '../../lib/cidr.ts';
import type { ClusterNode } from '../datastore/cluster-view.ts';
import { vtepMac } from './vxlan.ts';
import { errorMessage } from '../../lib/errors.ts';

/** How pod traffic crosses between nodes. */
export type RoutingMode = 'native' | 'vxlan';
/** Every routing mode, for flag validation. */
export const ROUTING_MODES: readonly RoutingMode[] = ['native', 'vxlan'];

/** One route to a remote node's pod CIDR. */
export interface NodeRoute {
  node: string;
  /** The remote pod CIDR. */
  dst: string;
  /** Native: the remote node's InternalIP. VXLAN: the network address of dst, resolved to the remote VTEP. */
  gateway: string;
  /** VXLAN only: the remote node's VTEP MAC and underlay address. */
  vtep?: { mac: string; remote: string };
}

/** What this node should route. */
export interface RoutingPlan {
  mode: RoutingMode;
  /** This node's underlay address (its first InternalIP; for VXLAN its first IPv4 one); null when it has none. */
  localAddress: string | null;
  routes: NodeRoute[];
  /** Pod CIDRs of other nodes that cannot be routed, each with the reason. */
  skipped: string[];
}

function family(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

function overlaps(a: string, b: string): boolean {
  const ca = parseCidr(a);
  const cb = parseCidr(b);
  const baseText = (c: typeof ca) => c.text.split('/')[0]!;
  return cidrContains(ca, baseText(cb)) || cidrContains(cb, baseText(ca));
}

/** The routes node `self` needs in this mode; a node without pod CIDRs or addresses is skipped with a reason. */
export function planRoutes(nodes: ClusterNode[], self: string, mode: RoutingMode): RoutingPlan {
  const me = nodes.find((n) => n.name === self);
  const ownCIDRs = me?.podCIDRs ?? [];
  const localAddress = (mode === 'vxlan' ? me?.internalIPs.find((ip) => family(ip) === 4) : me?.internalIPs[0]) ?? null;
  const plan: RoutingPlan = { mode, localAddress, routes: [], skipped: [] };
  for (const node of [...nodes].sort((a, b) => a.name.localeCompare(b.name))) {
    if (node.name === self) continue;
    for (const cidr of node.podCIDRs) {
      let dst: string;
      try {
        dst = parseCidr(cidr).text;
      } catch (err: unknown) {
        plan.skipped.push(`${node.name} ${cidr}: ${errorMessage(err)}`);
        continue;
      }
      const clash = ownCIDRs.find((own) => overlaps(own, dst));
      if (clash) {
        plan.skipped.push(`${node.name} ${dst}: overlaps this node's pod CIDR ${clash}`);
        continue;
      }
      if (mode === 'native') {
        const gateway = node.internalIPs.find((ip) => family(ip) === family(dst.split('/')[0]!));
        if (gateway) plan.routes.push({ node: node.name, dst, gateway });
        else plan.skipped.push(`${node.name} ${dst}: the node has no IPv${family(dst.split('/')[0]!)} InternalIP`);
        continue;
      }
      const remote = node.internalIPs.find((ip) => family(ip) === 4);
      if (!remote) plan.skipped.push(`${node.name} ${dst}: VXLAN needs the node's IPv4 InternalIP`);
      else if (!localAddress) plan.skipped.push(`${node.name} ${dst}: VXLAN needs this node's (${self}) IPv4 InternalIP`);
      else plan.routes.push({ node: node.name, dst, gateway: dst.split('/')[0]!, vtep: { mac: vtepMac(remote), remote } });
    }
  }
  return plan;
}

/**
 * This node's own addresses: they go into the ipcache as the host identity,
 * so traffic from the node to its pods (kubelet probes) is always allowed.
 */
import { listAddresses, openRtnl } from '../../datapath/netlink.ts';

/** Every address on every interface of the agent's network namespace. */
export async function hostAddresses(): Promise<string[]> {
  const rtnl = openRtnl();
  try {
    const addrs = await listAddresses(rtnl);
    return [...new Set(addrs.map((a) => a.address))].sort();
  } finally {
    rtnl.close();
  }
}

/**
 * DEL: endpoint out of the maps and addresses released (agent), TCX links
 * unpinned, veth pair deleted. Delete can be called many times, and after a
 * partial ADD: every step succeeds when its object is already gone.
 */
import { agentRequest } from '../agent/client.ts';
import { detachTcx } from '../datapath/tcx.ts';
import { deleteLink, openRtnl } from '../datapath/netlink.ts';
import type { CniEnv } from './config.ts';
import type { NetConf } from './spec.ts';
import { hostVethName, linkPins } from './names.ts';
import { agentSocket, toCniError } from './agent-errors.ts';

/** Runs DEL; rejects with a CniError only for failures a retry can fix. */
export async function cmdDel(env: CniEnv, conf: NetConf): Promise<void> {
  const socket = agentSocket(conf);
  // The agent goes first, so the maps never point at an ifindex the kernel may reuse.
  const removed = await agentRequest<{ endpoint: { hostIfname: string } | null; linksDir: string }>(
    socket,
    'DELETE',
    `/v1/endpoints/${encodeURIComponent(env.containerId)}/${encodeURIComponent(env.ifname)}`,
  ).catch(toCniError('remove the endpoint'));
  const hostIfname = removed.endpoint?.hostIfname ?? hostVethName(env.containerId, env.ifname);
  const rtnl = openRtnl();
  try {
    // Deleting the host end removes the pod end with it, and detaches both TCX
    // links in the same step: detaching them first would cost two more RCU
    // grace periods (~15 ms each) for nothing.
    await deleteLink(rtnl, hostIfname);
  } finally {
    rtnl.close();
  }
  const pins = linkPins(removed.linksDir, hostIfname);
  detachTcx(pins.ingress);
  detachTcx(pins.egress);
}

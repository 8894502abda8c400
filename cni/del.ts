/**
 * DEL: endpoint out of the maps and addresses released (agent), veth pair
 * deleted, TCX link pins removed. Delete can be called many times, and after
 * a partial ADD: every step succeeds when its object is already gone. It
 * needs no netns (the host end of the veth takes the pod end with it). When
 * the agent is down, the release is queued on disk for the agent to carry out
 * when it returns, and DEL still succeeds: kubelet would otherwise retry it
 * for as long as the agent is down. DEL fails only when a retry can help.
 *
 * The kernel modules (the netlink addon, koffi, libbpf) are imported while the
 * agent releases, not before its request is sent.
 */
import type { CniEnv } from './config.ts';
import { CniError, CNI_ERR, type NetConf } from './spec.ts';
import { hostVethName, linkPins } from './names.ts';
import { releaseAttachment } from './release.ts';
import { errorMessage } from '../lib/errors.ts';

/** Runs DEL; resolves with a note for the log (e.g. that the release was queued), rejects with code 11. */
export async function cmdDel(env: CniEnv, conf: NetConf): Promise<string | undefined> {
  const hostIfname = hostVethName(env.containerId, env.ifname);
  // The agent goes first, so the maps never point at an ifindex the kernel may reuse.
  const release = releaseAttachment(conf, env.containerId, env.ifname, hostIfname);
  release.catch(() => undefined);
  // One turn of the event loop puts the request on the agent's socket before the synchronous loading below.
  await new Promise((resolve) => setImmediate(resolve));
  const [{ deleteLink, openRtnl }, { detachTcx }] = await Promise.all([import('../datapath/netlink.ts'), import('../datapath/tcx.ts')]);
  const released = await release;
  const rtnl = openRtnl();
  try {
    // Deleting the host end removes the pod end with it, and detaches both TCX
    // links in the same step: detaching them first would cost two more RCU
    // grace periods (~15 ms each) for nothing.
    await deleteLink(rtnl, hostIfname);
  } catch (err: unknown) {
    throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `delete host veth ${hostIfname}: ${errorMessage(err)}`);
  } finally {
    rtnl.close();
  }
  if (released.linksDir === undefined) {
    return `agent unreachable (${released.reason}): veth ${hostIfname} deleted, release of the endpoint, addresses and link pins queued in ${released.queuedIn}`;
  }
  const pins = linkPins(released.linksDir, hostIfname);
  detachTcx(pins.ingress);
  detachTcx(pins.egress);
  return undefined;
}

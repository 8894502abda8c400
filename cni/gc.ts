/**
 * GC (spec 1.1.0): releases every attachment of this network that is not in
 * `cni.dev/valid-attachments`: its endpoint and addresses at the agent, its
 * pinned TCX links, and its host veth. Valid attachments are not touched.
 * Only what this agent's ADDs made is considered: endpoints and allocations
 * the agent holds, pins in the agent's links directory, and host veths
 * carrying the agent's mark (see host-veth.ts).
 */
import fs from 'node:fs';
import { agentRequest } from '../contract/client.ts';
import type { Endpoint, StatusResponse } from '../contract/api-types.ts';
import { detachTcx } from '../datapath/tcx.ts';
import { deleteLink, openRtnl } from '../datapath/netlink.ts';
import { agentSocket, toCniError } from './agent-errors.ts';
import { ownedHostVeths } from './host-veth.ts';
import { hostVethName, linkPins } from './names.ts';
import { releaseAttachment } from './release.ts';
import { CniError, CNI_ERR, type NetConf } from './spec.ts';
import { errorMessage } from '../lib/errors.ts';

const PIN_RE = /^(lxc[0-9a-f]{11})_(?:ingress|egress)$/;

/** Runs GC; resolves with a summary for the log, rejects with code 7 (no valid-attachments) or 11 (agent down). */
export async function cmdGc(conf: NetConf): Promise<string> {
  if (conf.validAttachments === undefined) {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      "GC needs 'cni.dev/valid-attachments' in the network configuration (the runtime must list the attachments still in use; an empty list means none)",
    );
  }
  const socket = agentSocket(conf);
  const validKeys = new Set(conf.validAttachments.map((a) => `${a.containerID}\0${a.ifname}`));
  const validHost = new Set(conf.validAttachments.map((a) => hostVethName(a.containerID, a.ifname)));

  const [endpoints, ipam, status] = await Promise.all([
    agentRequest<Endpoint[]>(socket, 'GET', '/v1/endpoints'),
    agentRequest<{ allocations: { containerID: string; ifname: string }[] }>(socket, 'GET', '/v1/ipam'),
    agentRequest<StatusResponse>(socket, 'GET', '/v1/status'),
  ]).catch(toCniError('GC: list what the agent holds'));

  const stale = new Map<string, { containerID: string; ifname: string }>();
  for (const a of [...endpoints, ...ipam.allocations]) {
    const key = `${a.containerID}\0${a.ifname}`;
    if (!validKeys.has(key)) stale.set(key, { containerID: a.containerID, ifname: a.ifname });
  }
  const staleHost = new Set<string>();
  for (const a of stale.values()) {
    const hostIfname = hostVethName(a.containerID, a.ifname);
    staleHost.add(hostIfname);
    await releaseAttachment(conf, a.containerID, a.ifname, hostIfname);
  }

  const rtnl = openRtnl();
  let veths = 0;
  try {
    for (const link of await ownedHostVeths(rtnl, socket)) if (!validHost.has(link.name)) staleHost.add(link.name);
    for (const name of staleHost) if (await deleteLink(rtnl, name)) veths++;
  } catch (err: unknown) {
    throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `GC: delete stale host veths: ${errorMessage(err)}`);
  } finally {
    rtnl.close();
  }

  const linksDir = `${status.datapath.pinDir}/links`;
  let pins = 0;
  let names: string[] = [];
  try {
    names = fs.readdirSync(linksDir);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const pinned = new Set(names.map((n) => PIN_RE.exec(n)?.[1]).filter((n): n is string => n !== undefined));
  for (const hostIfname of pinned) {
    if (validHost.has(hostIfname)) continue;
    const p = linkPins(linksDir, hostIfname);
    detachTcx(p.ingress);
    detachTcx(p.egress);
    pins++;
  }
  return `GC kept ${validKeys.size} valid attachment(s); released ${stale.size} at the agent, deleted ${veths} host veth(s), unpinned the links of ${pins} veth(s)`;
}

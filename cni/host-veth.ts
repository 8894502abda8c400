/**
 * Ownership of host veths. Every host veth ADD creates gets an interface
 * alias (IFLA_IFALIAS, shown by `ip link`) naming the agent it belongs to and
 * the attachment, e.g. "sluice agent=3f2a9c01b7e4 <containerID>/eth0". GC
 * deletes only veths that carry its own agent's mark, so it never touches an
 * interface of another CNI, of another Sluice agent on the same machine, or
 * one an operator made by hand, even when its name starts with "lxc".
 */
import { sha256Hex } from '../lib/sha256-hex.ts';
import { IFALIAS_MAX_BYTES, listLinks, type Link } from '../datapath/link.ts';
import type { Rtnl } from '../datapath/rtnl.ts';

// ADD marks its host veth with setLinkAlias; callers find it here, next to the mark it writes.
export { setLinkAlias } from '../datapath/link.ts';

const AGENT_TAG_HEX_CHARS = 12;
const HOST_VETH_PREFIX = 'lxc';

/** A host-side link with its alias. */
export interface AliasedLink extends Pick<Link, 'index' | 'name' | 'kind'> {
  alias: string;
}

/** The mark that ties a host veth to the agent serving `socket` (one agent per socket on a machine). */
export function agentMark(socket: string): string {
  return `sluice agent=${sha256Hex(socket).slice(0, AGENT_TAG_HEX_CHARS)}`;
}

/** The alias ADD gives a host veth: the agent mark, then the attachment (cut to IFALIASZ). */
export function hostVethAlias(socket: string, containerID: string, ifname: string): string {
  const alias = `${agentMark(socket)} ${containerID}/${ifname}`;
  return Buffer.from(alias).subarray(0, IFALIAS_MAX_BYTES).toString('utf8');
}

/** Every link in the namespace of `rtnl`, with its alias ('' when it has none). */
export async function listLinksWithAlias(rtnl: Rtnl): Promise<AliasedLink[]> {
  return (await listLinks(rtnl)).map((link) => {
    const entry: AliasedLink = { index: link.index, name: link.name, alias: link.alias };
    if (link.kind !== undefined) entry.kind = link.kind;
    return entry;
  });
}

/** The host veths (lxc*, kind veth) that carry the mark of the agent serving `socket`. */
export async function ownedHostVeths(rtnl: Rtnl, socket: string): Promise<AliasedLink[]> {
  const mark = `${agentMark(socket)} `;
  return (await listLinksWithAlias(rtnl)).filter((l) => l.name.startsWith(HOST_VETH_PREFIX) && l.kind === 'veth' && l.alias.startsWith(mark));
}

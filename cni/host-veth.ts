/**
 * Ownership of host veths. Every host veth ADD creates gets an interface
 * alias (IFLA_IFALIAS, shown by `ip link`) naming the agent it belongs to and
 * the attachment, e.g. "sluice agent=3f2a9c01b7e4 <containerID>/eth0". GC
 * deletes only veths that carry its own agent's mark, so it never touches an
 * interface of another CNI, of another Sluice agent on the same machine, or
 * one an operator made by hand, even when its name starts with "lxc".
 */
import { createHash } from 'node:crypto';
import { ifinfomsg, parseLink } from '../datapath/link.ts';
import { nlattrString, nlattrU32, nlString, parseNlattrs } from '../datapath/nlattr.ts';
import { NLM_F_DUMP, type Rtnl } from '../datapath/rtnl.ts';

const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const IFLA_IFALIAS = 20;
const IFLA_EXT_MASK = 29;
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
/** IFALIASZ (256) minus the NUL. */
const MAX_ALIAS_BYTES = 255;
const AGENT_TAG_HEX_CHARS = 12;
const HOST_VETH_PREFIX = 'lxc';

/** A host-side link with its alias. */
export interface AliasedLink {
  index: number;
  name: string;
  kind?: string;
  alias: string;
}

/** The mark that ties a host veth to the agent serving `socket` (one agent per socket on a machine). */
export function agentMark(socket: string): string {
  return `sluice agent=${createHash('sha256').update(socket).digest('hex').slice(0, AGENT_TAG_HEX_CHARS)}`;
}

/** The alias ADD gives a host veth: the agent mark, then the attachment (cut to IFALIASZ). */
export function hostVethAlias(socket: string, containerID: string, ifname: string): string {
  const alias = `${agentMark(socket)} ${containerID}/${ifname}`;
  return Buffer.from(alias).subarray(0, MAX_ALIAS_BYTES).toString('utf8');
}

/** Sets a link's alias; rejects with a NetlinkError (e.g. 'ENODEV'). */
export async function setLinkAlias(rtnl: Rtnl, index: number, alias: string): Promise<void> {
  await rtnl.request(RTM_NEWLINK, 0, [ifinfomsg(index), nlattrString(IFLA_IFALIAS, alias)], `set alias of link #${index}`);
}

/** Every link in the namespace of `rtnl`, with its alias ('' when it has none). */
export async function listLinksWithAlias(rtnl: Rtnl): Promise<AliasedLink[]> {
  const replies = await rtnl.request(RTM_GETLINK, NLM_F_DUMP, [ifinfomsg(0), nlattrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)], 'list links');
  const out: AliasedLink[] = [];
  for (const r of replies) {
    if (r.type !== RTM_NEWLINK) continue;
    const link = parseLink(r.data);
    const alias = parseNlattrs(r.data, 16).get(IFLA_IFALIAS);
    const entry: AliasedLink = { index: link.index, name: link.name, alias: alias === undefined ? '' : nlString(alias) };
    if (link.kind !== undefined) entry.kind = link.kind;
    out.push(entry);
  }
  return out;
}

/** The host veths (lxc*, kind veth) that carry the mark of the agent serving `socket`. */
export async function ownedHostVeths(rtnl: Rtnl, socket: string): Promise<AliasedLink[]> {
  const mark = `${agentMark(socket)} `;
  return (await listLinksWithAlias(rtnl)).filter((l) => l.name.startsWith(HOST_VETH_PREFIX) && l.kind === 'veth' && l.alias.startsWith(mark));
}

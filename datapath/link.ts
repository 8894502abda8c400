// Links: create a veth pair with the peer born inside the pod's namespace, or a VXLAN device; look links
// up and list them with their aliases; set them up, their MTU, their alias; delete them. One rtnetlink
// round trip per call.
import { nlattr, nlattrNested, nlattrString, nlattrU32, nlString, parseNlattrs } from './nlattr.ts';
import { formatMac, parseIp, parseMac } from '../lib/ip-bytes.ts';
import { isErrno, type Rtnl } from './rtnl.ts';
import {
  IFALIASZ,
  IFF_UP,
  IFINFOMSG_BYTES,
  IFLA_ADDRESS,
  IFLA_EXT_MASK,
  IFLA_IFALIAS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_PORT,
  IFNAMSIZ,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  RTEXT_FILTER_SKIP_STATS,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  VETH_INFO_PEER,
} from './rtnl-uapi.ts';

/** Longest interface name the kernel accepts (IFNAMSIZ - 1). */
export const IFNAME_MAX_CHARS = IFNAMSIZ - 1;
/** Longest interface alias the kernel keeps, in bytes (IFALIASZ - 1). */
export const IFALIAS_MAX_BYTES = IFALIASZ - 1;

/** A network interface as seen from the namespace of the socket that asked. */
export interface Link {
  index: number;
  name: string;
  /** Link-layer address, 'aa:bb:cc:dd:ee:ff' ('' when the link has none). */
  mac: string;
  mtu: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** The rtnl link kind ('veth', ...), absent for devices without one (e.g. lo). */
  kind?: string;
  /** For a veth: the peer's ifindex (in the peer's namespace); IFLA_LINK generally. */
  peerIndex?: number;
}

/** Options for createVeth. */
export interface VethOptions {
  /** Name of the end that stays in the namespace of `rtnl` (the host side). */
  hostName: string;
  /** Name of the end created directly in the pod namespace (e.g. 'eth0'). */
  peerName: string;
  /** Open fd of the pod's network namespace (see openNetns). */
  peerNetnsFd: number;
  /** MTU for both ends; kernel default (1500) when absent. */
  mtu?: number;
  /** MAC for the pod side; random when absent. */
  peerMac?: string;
  /** MAC for the host side; random when absent. */
  hostMac?: string;
  /**
   * Bring the host end up in the same message (saves a setLinkUp round trip). Default false. The peer
   * cannot be brought up this way: veth_open fails with ENOTCONN before the pair is linked.
   */
  hostUp?: boolean;
}

/** A link with its alias, as listLinks() gives it. */
export interface AliasedLink extends Link {
  /** IFLA_IFALIAS ('ip link' shows it as "alias"), '' when the link has none. */
  alias: string;
}

/** Options for createVxlan: a VXLAN device with static forwarding entries only (no learning). */
export interface VxlanOptions {
  name: string;
  /** The VXLAN network identifier. */
  vni: number;
  /** UDP destination port of the encapsulated packets. */
  port: number;
  /** Underlay address: the outer source of encapsulated packets (IPv4). */
  local: string;
  /** ifindex of the underlay interface that holds `local`. */
  underlayIndex: number;
  mtu: number;
  /** The device's MAC. */
  mac: string;
}

/** Encodes struct ifinfomsg (family AF_UNSPEC). */
export function ifinfomsg(index: number, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(IFINFOMSG_BYTES);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags >>> 0, 8);
  b.writeUInt32LE(change >>> 0, 12);
  return b;
}

/**
 * Builds the RTM_NEWLINK payload for a veth pair: ifinfomsg + IFLA_IFNAME [+ IFLA_MTU, IFLA_ADDRESS] +
 * IFLA_LINKINFO { IFLA_INFO_KIND "veth", IFLA_INFO_DATA { VETH_INFO_PEER: ifinfomsg + peer attributes
 * incl. IFLA_NET_NS_FD } }. Pure; exported for tests.
 */
export function encodeVethRequest(opts: VethOptions): Buffer[] {
  checkName(opts.hostName);
  checkName(opts.peerName);
  const upFlags = opts.hostUp === true ? IFF_UP : 0;
  const peer: Buffer[] = [ifinfomsg(0), nlattrString(IFLA_IFNAME, opts.peerName)];
  const host: Buffer[] = [ifinfomsg(0, upFlags, upFlags), nlattrString(IFLA_IFNAME, opts.hostName)];
  if (opts.mtu !== undefined) {
    peer.push(nlattrU32(IFLA_MTU, opts.mtu));
    host.push(nlattrU32(IFLA_MTU, opts.mtu));
  }
  if (opts.peerMac !== undefined) peer.push(nlattr(IFLA_ADDRESS, parseMac(opts.peerMac)));
  if (opts.hostMac !== undefined) host.push(nlattr(IFLA_ADDRESS, parseMac(opts.hostMac)));
  peer.push(nlattrU32(IFLA_NET_NS_FD, opts.peerNetnsFd));
  host.push(
    nlattrNested(IFLA_LINKINFO, [
      nlattrString(IFLA_INFO_KIND, 'veth'),
      nlattrNested(IFLA_INFO_DATA, [nlattrNested(VETH_INFO_PEER, peer)]),
    ]),
  );
  return host;
}

/**
 * Creates a veth pair in one RTM_NEWLINK (NLM_F_CREATE|NLM_F_EXCL): `hostName` in the namespace of
 * `rtnl`, `peerName` directly inside the namespace of `peerNetnsFd`. Rejects with `.code` 'EEXIST' when
 * a link of either name exists (in its namespace).
 */
export async function createVeth(rtnl: Rtnl, opts: VethOptions): Promise<void> {
  await rtnl.request(
    RTM_NEWLINK,
    NLM_F_CREATE | NLM_F_EXCL,
    encodeVethRequest(opts),
    `create veth ${opts.hostName} <-> ${opts.peerName}`,
  );
}

/**
 * Builds the RTM_NEWLINK payload for a VXLAN device: ifinfomsg + IFLA_IFNAME, IFLA_MTU, IFLA_ADDRESS +
 * IFLA_LINKINFO { IFLA_INFO_KIND "vxlan", IFLA_INFO_DATA { ID, LINK, LOCAL, LEARNING 0, PORT } }. Pure;
 * exported for tests.
 */
export function encodeVxlanRequest(opts: VxlanOptions): Buffer[] {
  checkName(opts.name);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(opts.port);
  return [
    ifinfomsg(0),
    nlattrString(IFLA_IFNAME, opts.name),
    nlattrU32(IFLA_MTU, opts.mtu),
    nlattr(IFLA_ADDRESS, parseMac(opts.mac)),
    nlattrNested(IFLA_LINKINFO, [
      nlattrString(IFLA_INFO_KIND, 'vxlan'),
      nlattrNested(IFLA_INFO_DATA, [
        nlattrU32(IFLA_VXLAN_ID, opts.vni),
        nlattrU32(IFLA_VXLAN_LINK, opts.underlayIndex),
        nlattr(IFLA_VXLAN_LOCAL, parseIp(opts.local).bytes),
        nlattr(IFLA_VXLAN_LEARNING, Buffer.from([0])),
        nlattr(IFLA_VXLAN_PORT, port),
      ]),
    ]),
  ];
}

/** Creates a VXLAN device in one RTM_NEWLINK (NLM_F_CREATE|NLM_F_EXCL); rejects with 'EEXIST' when a link of that name exists. */
export async function createVxlan(rtnl: Rtnl, opts: VxlanOptions): Promise<void> {
  await rtnl.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, encodeVxlanRequest(opts), `create ${opts.name} (local ${opts.local})`);
}

/** Decodes an RTM_NEWLINK message payload (ifinfomsg + attributes) into a Link. */
export function parseLink(data: Buffer): Link {
  const attrs = parseNlattrs(data, IFINFOMSG_BYTES);
  const link: Link = {
    index: data.readInt32LE(4),
    name: nlString(attrs.get(IFLA_IFNAME) ?? Buffer.alloc(0)),
    mac: formatMac(attrs.get(IFLA_ADDRESS) ?? Buffer.alloc(0)),
    mtu: attrs.get(IFLA_MTU)?.readUInt32LE(0) ?? 0,
    up: (data.readUInt32LE(8) & IFF_UP) !== 0,
  };
  const info = attrs.get(IFLA_LINKINFO);
  const kind = info === undefined ? undefined : parseNlattrs(info).get(IFLA_INFO_KIND);
  if (kind !== undefined) link.kind = nlString(kind);
  const peer = attrs.get(IFLA_LINK);
  if (peer !== undefined && peer.length >= 4) link.peerIndex = peer.readUInt32LE(0);
  return link;
}

/** Looks a link up by name in the namespace of `rtnl`; resolves null when there is none. */
export async function linkByName(rtnl: Rtnl, name: string): Promise<Link | null> {
  checkName(name);
  try {
    const replies = await rtnl.request(
      RTM_GETLINK,
      0,
      [ifinfomsg(0), nlattrString(IFLA_IFNAME, name), nlattrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)],
      `get link ${name}`,
    );
    const reply = replies.find((r) => r.type === RTM_NEWLINK);
    return reply === undefined ? null : parseLink(reply.data);
  } catch (err: unknown) {
    if (isErrno(err, 'ENODEV')) return null;
    throw err;
  }
}

/** Looks a link up by ifindex; resolves null when there is none. */
export async function linkByIndex(rtnl: Rtnl, index: number): Promise<Link | null> {
  try {
    const replies = await rtnl.request(
      RTM_GETLINK,
      0,
      [ifinfomsg(index), nlattrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)],
      `get link #${index}`,
    );
    const reply = replies.find((r) => r.type === RTM_NEWLINK);
    return reply === undefined ? null : parseLink(reply.data);
  } catch (err: unknown) {
    if (isErrno(err, 'ENODEV')) return null;
    throw err;
  }
}

/** Every link in the namespace of `rtnl`, with its alias. */
export async function listLinks(rtnl: Rtnl): Promise<AliasedLink[]> {
  const replies = await rtnl.request(RTM_GETLINK, NLM_F_DUMP, [ifinfomsg(0), nlattrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)], 'list links');
  const out: AliasedLink[] = [];
  for (const r of replies) {
    if (r.type !== RTM_NEWLINK) continue;
    const alias = parseNlattrs(r.data, IFINFOMSG_BYTES).get(IFLA_IFALIAS);
    out.push({ ...parseLink(r.data), alias: alias === undefined ? '' : nlString(alias) });
  }
  return out;
}

/** Sets a link's alias (at most IFALIAS_MAX_BYTES); rejects with a NetlinkError (e.g. 'ENODEV'). */
export async function setLinkAlias(rtnl: Rtnl, index: number, alias: string): Promise<void> {
  await rtnl.request(RTM_NEWLINK, 0, [ifinfomsg(index), nlattrString(IFLA_IFALIAS, alias)], `set alias of link #${index}`);
}

/** Sets a link administratively up; rejects with 'ENODEV' when it does not exist. */
export async function setLinkUp(rtnl: Rtnl, index: number): Promise<void> {
  await rtnl.request(RTM_NEWLINK, 0, [ifinfomsg(index, IFF_UP, IFF_UP)], `set link #${index} up`);
}

/** Sets a link's MTU; rejects with 'ENODEV' when it does not exist. */
export async function setLinkMtu(rtnl: Rtnl, index: number, mtu: number): Promise<void> {
  await rtnl.request(RTM_NEWLINK, 0, [ifinfomsg(index), nlattrU32(IFLA_MTU, mtu)], `set link #${index} mtu ${mtu}`);
}

/**
 * Deletes a link by ifindex or name (deleting one end of a veth removes both). Idempotent: resolves
 * false, never rejects, when the link does not exist (ENODEV); true when it was deleted.
 */
export async function deleteLink(rtnl: Rtnl, link: number | string): Promise<boolean> {
  const byName = typeof link === 'string';
  if (byName) checkName(link);
  const payload = byName ? [ifinfomsg(0), nlattrString(IFLA_IFNAME, link)] : [ifinfomsg(link)];
  try {
    await rtnl.request(RTM_DELLINK, 0, payload, `delete link ${byName ? link : `#${link}`}`);
    return true;
  } catch (err: unknown) {
    if (isErrno(err, 'ENODEV')) return false;
    throw err;
  }
}

function checkName(name: string): void {
  if (name.length === 0 || Buffer.byteLength(name) > IFNAME_MAX_CHARS || /[\s/:]/.test(name)) {
    throw new TypeError(`invalid interface name ${JSON.stringify(name)} (1-${IFNAME_MAX_CHARS} bytes, no '/', ':' or spaces)`);
  }
}

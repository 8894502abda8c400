// Neighbour table entries: permanent ip -> mac mappings on an interface (ARP / NDP), and the forwarding
// entries (FDB) of a VXLAN device: mac -> remote tunnel endpoint. Both are RTM_NEWNEIGH / RTM_DELNEIGH
// messages, struct ndmsg + NDA_* attributes.
import { nlattr } from './nlattr.ts';
import { afOf, parseIp, parseMac } from '../lib/ip-bytes.ts';
import { isErrno, type Rtnl } from './rtnl.ts';
import {
  AF_BRIDGE,
  NDA_DST,
  NDA_LLADDR,
  NDMSG_BYTES,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NTF_SELF,
  NUD_PERMANENT,
  RTM_DELNEIGH,
  RTM_NEWNEIGH,
} from './rtnl-uapi.ts';

/** A neighbor entry. */
export interface NeighborSpec {
  /** ifindex the entry belongs to. */
  index: number;
  /** '10.1.2.3' or 'fd00::1'. */
  ip: string;
  /** 'aa:bb:cc:dd:ee:ff' (ignored on delete). */
  mac: string;
  /** Interface name, only used in error messages. */
  dev?: string;
}

/** Which forwarding entry of a VXLAN device: the one of `mac`. */
export interface FdbKey {
  /** ifindex of the VXLAN device. */
  index: number;
  /** 'aa:bb:cc:dd:ee:ff'. */
  mac: string;
  /** Interface name, only used in error messages. */
  dev?: string;
}

/** A forwarding entry of a VXLAN device: frames for `mac` are tunnelled to `dst`. */
export interface FdbSpec extends FdbKey {
  /** The remote tunnel endpoint's underlay address. */
  dst: string;
}

/** Encodes a permanent struct ndmsg. */
function ndmsg(family: number, index: number, flags = 0): Buffer {
  const msg = Buffer.alloc(NDMSG_BYTES);
  msg.writeUInt8(family, 0);
  msg.writeInt32LE(index, 4);
  msg.writeUInt16LE(NUD_PERMANENT, 8);
  msg.writeUInt8(flags, 10);
  return msg;
}

function encode(spec: NeighborSpec, withMac: boolean): Buffer[] {
  const ip = parseIp(spec.ip);
  const parts: Buffer[] = [ndmsg(afOf(ip.family), spec.index), nlattr(NDA_DST, ip.bytes)];
  if (withMac) parts.push(nlattr(NDA_LLADDR, parseMac(spec.mac)));
  return parts;
}

/** Encodes a VXLAN FDB entry (AF_BRIDGE, NTF_SELF): its MAC, then its remote when given (not on delete). Pure; exported for tests. */
export function encodeFdbEntry(entry: FdbKey & { dst?: string }): Buffer[] {
  const parts = [ndmsg(AF_BRIDGE, entry.index, NTF_SELF), nlattr(NDA_LLADDR, parseMac(entry.mac))];
  if (entry.dst !== undefined) parts.push(nlattr(NDA_DST, parseIp(entry.dst).bytes));
  return parts;
}

/** Adds or replaces a permanent neighbor entry (like `ip neigh replace ... nud permanent`). */
export async function addNeighbor(rtnl: Rtnl, spec: NeighborSpec): Promise<void> {
  await rtnl.request(
    RTM_NEWNEIGH,
    NLM_F_CREATE | NLM_F_REPLACE,
    encode(spec, true),
    `add neighbor ${spec.ip} lladdr ${spec.mac} dev ${spec.dev ?? `#${spec.index}`}`,
  );
}

/** Deletes a neighbor entry; resolves false when it was not there (ENOENT) or the link is gone (ENODEV). */
export async function deleteNeighbor(rtnl: Rtnl, spec: NeighborSpec): Promise<boolean> {
  try {
    await rtnl.request(RTM_DELNEIGH, 0, encode(spec, false), `delete neighbor ${spec.ip} dev ${spec.dev ?? `#${spec.index}`}`);
    return true;
  } catch (err: unknown) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENODEV')) return false;
    throw err;
  }
}

/** Adds or replaces a forwarding entry (like `bridge fdb replace MAC dev DEV dst DST self permanent`). */
export async function addFdbEntry(rtnl: Rtnl, spec: FdbSpec): Promise<void> {
  await rtnl.request(
    RTM_NEWNEIGH,
    NLM_F_CREATE | NLM_F_REPLACE,
    encodeFdbEntry(spec),
    `add fdb ${spec.mac} dst ${spec.dst} dev ${spec.dev ?? `#${spec.index}`}`,
  );
}

/** Deletes the forwarding entry of a MAC; resolves false when it was not there (ENOENT) or the device is gone (ENODEV). */
export async function deleteFdbEntry(rtnl: Rtnl, key: FdbKey): Promise<boolean> {
  try {
    await rtnl.request(RTM_DELNEIGH, 0, encodeFdbEntry({ index: key.index, mac: key.mac }), `delete fdb ${key.mac} dev ${key.dev ?? `#${key.index}`}`);
    return true;
  } catch (err: unknown) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENODEV')) return false;
    throw err;
  }
}

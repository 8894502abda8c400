// Neighbor (ARP / NDP) entries: permanent ip -> mac mappings on an interface.
import { nlattr } from './nlattr.ts';
import { afOf, parseIp, parseMac } from '../lib/ip-bytes.ts';
import { isErrno, NLM_F_CREATE, NLM_F_REPLACE, type Rtnl } from './rtnl.ts';

const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const NDMSG_BYTES = 12;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NUD_PERMANENT = 0x80;

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

function encode(spec: NeighborSpec, withMac: boolean): Buffer[] {
  const ip = parseIp(spec.ip);
  const msg = Buffer.alloc(NDMSG_BYTES);
  msg.writeUInt8(afOf(ip.family), 0);
  msg.writeInt32LE(spec.index, 4);
  msg.writeUInt16LE(NUD_PERMANENT, 8);
  const parts: Buffer[] = [msg, nlattr(NDA_DST, ip.bytes)];
  if (withMac) parts.push(nlattr(NDA_LLADDR, parseMac(spec.mac)));
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

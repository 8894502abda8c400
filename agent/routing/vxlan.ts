/**
 * The VXLAN overlay's kernel objects: one VXLAN device per node, and for every
 * other node a forwarding entry (its VTEP MAC → its underlay address). A
 * node's VTEP MAC is derived from its underlay address, so every agent knows
 * every other node's MAC from the Node objects alone, with nothing to publish.
 */
import { VXLAN_PORT } from '../../datapath/abi.ts';
import { nlattr, nlattrNested, nlattrString, nlattrU32 } from '../../datapath/nlattr.ts';
import { parseIp, parseMac } from '../../lib/ip-bytes.ts';
import { ifinfomsg } from '../../datapath/link.ts';
import { isErrno, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, type Rtnl } from '../../datapath/rtnl.ts';

/** Name of the overlay device in the node's network namespace. */
export const VXLAN_DEVICE = 'sluice_vxlan';
/** The VXLAN network identifier every Sluice node uses. */
export const VXLAN_VNI = 1;
/** IANA's VXLAN UDP port (the datapath's SLUICE_VXLAN_PORT). */
export const VXLAN_UDP_PORT = VXLAN_PORT;
/** Bytes VXLAN adds over an IPv4 underlay: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD_BYTES = 50;

const RTM_NEWLINK = 16;
const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;
const AF_BRIDGE = 7;
const NDMSG_BYTES = 12;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NUD_PERMANENT = 0x80;
const NTF_SELF = 0x02;
/** First octet of every VTEP MAC: locally administered, unicast. */
const VTEP_MAC_PREFIX = [0x02, 0x53];

/** What the node's VXLAN device looks like. */
export interface VxlanDeviceSpec {
  /** This node's underlay address: the outer source of encapsulated packets. */
  local: string;
  /** ifindex of the underlay interface that holds `local`. */
  underlayIndex: number;
  mtu: number;
}

/** The VTEP MAC of the node with this (IPv4) underlay address: 02:53 followed by the address's four bytes. */
export function vtepMac(underlayAddress: string): string {
  const ip = parseIp(underlayAddress);
  if (ip.family !== 4) throw new TypeError(`VXLAN needs an IPv4 underlay address, not ${underlayAddress}`);
  return [...VTEP_MAC_PREFIX, ...ip.bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** RTM_NEWLINK payload for the VXLAN device (no learning: every peer is a static entry). Pure; exported for tests. */
export function encodeVxlanDevice(spec: VxlanDeviceSpec): Buffer[] {
  const port = Buffer.alloc(2);
  port.writeUInt16BE(VXLAN_UDP_PORT);
  return [
    ifinfomsg(0),
    nlattrString(IFLA_IFNAME, VXLAN_DEVICE),
    nlattrU32(IFLA_MTU, spec.mtu),
    nlattr(IFLA_ADDRESS, parseMac(vtepMac(spec.local))),
    nlattrNested(IFLA_LINKINFO, [
      nlattrString(IFLA_INFO_KIND, 'vxlan'),
      nlattrNested(IFLA_INFO_DATA, [
        nlattrU32(IFLA_VXLAN_ID, VXLAN_VNI),
        nlattrU32(IFLA_VXLAN_LINK, spec.underlayIndex),
        nlattr(IFLA_VXLAN_LOCAL, parseIp(spec.local).bytes),
        nlattr(IFLA_VXLAN_LEARNING, Buffer.from([0])),
        nlattr(IFLA_VXLAN_PORT, port),
      ]),
    ]),
  ];
}

/** Creates the VXLAN device; rejects with 'EEXIST' when a link of that name exists. */
export async function createVxlanDevice(rtnl: Rtnl, spec: VxlanDeviceSpec): Promise<void> {
  await rtnl.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, encodeVxlanDevice(spec), `create ${VXLAN_DEVICE} (local ${spec.local})`);
}

function encodeFdb(vxlanIndex: number, mac: string, remote: string | null): Buffer[] {
  const msg = Buffer.alloc(NDMSG_BYTES);
  msg.writeUInt8(AF_BRIDGE, 0);
  msg.writeInt32LE(vxlanIndex, 4);
  msg.writeUInt16LE(NUD_PERMANENT, 8);
  msg.writeUInt8(NTF_SELF, 10);
  const parts = [msg, nlattr(NDA_LLADDR, parseMac(mac))];
  if (remote !== null) parts.push(nlattr(NDA_DST, parseIp(remote).bytes));
  return parts;
}

/** Frames for `mac` go to the node at `remote` (like `bridge fdb replace MAC dev sluice_vxlan dst REMOTE self permanent`). */
export async function addFdbEntry(rtnl: Rtnl, vxlanIndex: number, mac: string, remote: string): Promise<void> {
  await rtnl.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, encodeFdb(vxlanIndex, mac, remote), `add fdb ${mac} dst ${remote} dev ${VXLAN_DEVICE}`);
}

/** Removes the forwarding entry of `mac`; resolves false when it was not there. */
export async function deleteFdbEntry(rtnl: Rtnl, vxlanIndex: number, mac: string): Promise<boolean> {
  try {
    await rtnl.request(RTM_DELNEIGH, 0, encodeFdb(vxlanIndex, mac, null), `delete fdb ${mac} dev ${VXLAN_DEVICE}`);
    return true;
  } catch (err: unknown) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENODEV')) return false;
    throw err;
  }
}

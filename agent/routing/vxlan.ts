/**
 * The VXLAN overlay's kernel objects: one VXLAN device per node, and for every
 * other node a forwarding entry (its VTEP MAC → its underlay address). A
 * node's VTEP MAC is derived from its underlay address, so every agent knows
 * every other node's MAC from the Node objects alone, with nothing to publish.
 * The messages are built in datapath/ (link.ts, neighbor.ts); this file says
 * what Sluice's overlay is made of.
 */
import { VXLAN_PORT } from '../../datapath/abi.ts';
import { parseIp } from '../../lib/ip-bytes.ts';
import { createVxlan } from '../../datapath/link.ts';
import { addFdbEntry as addFdb, deleteFdbEntry as deleteFdb } from '../../datapath/neighbor.ts';
import type { Rtnl } from '../../datapath/rtnl.ts';

/** Name of the overlay device in the node's network namespace. */
export const VXLAN_DEVICE = 'sluice_vxlan';
/** The VXLAN network identifier every Sluice node uses. */
export const VXLAN_VNI = 1;
/** IANA's VXLAN UDP port (the datapath's SLUICE_VXLAN_PORT). */
export const VXLAN_UDP_PORT = VXLAN_PORT;
/** Bytes VXLAN adds over an IPv4 underlay: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD_BYTES = 50;

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

/** Creates the VXLAN device (no learning: every peer is a static entry); rejects with 'EEXIST' when a link of that name exists. */
export async function createVxlanDevice(rtnl: Rtnl, spec: VxlanDeviceSpec): Promise<void> {
  await createVxlan(rtnl, {
    name: VXLAN_DEVICE,
    vni: VXLAN_VNI,
    port: VXLAN_UDP_PORT,
    local: spec.local,
    underlayIndex: spec.underlayIndex,
    mtu: spec.mtu,
    mac: vtepMac(spec.local),
  });
}

/** Frames for `mac` go to the node at `remote` (like `bridge fdb replace MAC dev sluice_vxlan dst REMOTE self permanent`). */
export async function addFdbEntry(rtnl: Rtnl, vxlanIndex: number, mac: string, remote: string): Promise<void> {
  await addFdb(rtnl, { index: vxlanIndex, mac, dst: remote, dev: VXLAN_DEVICE });
}

/** Removes the forwarding entry of `mac`; resolves false when it was not there. */
export async function deleteFdbEntry(rtnl: Rtnl, vxlanIndex: number, mac: string): Promise<boolean> {
  return deleteFdb(rtnl, { index: vxlanIndex, mac, dev: VXLAN_DEVICE });
}

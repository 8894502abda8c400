/**
 * The TypeScript mirror of bpf/sluice.h: sizes, offsets, constants and the
 * encoders/decoders of every map key and value. test/abi.test.ts compares the
 * layouts here with the BTF of the compiled object, so a change on one side
 * only fails the build, never the datapath.
 *
 * Multi-byte integers are in host order (little-endian on x86_64 and arm64,
 * the only targets); addresses and MACs are bytes in network order.
 */
import { formatIp, formatMac, parseIp, parseMac } from './ip-bytes.ts';

/** SLUICE_FAMILY_IPV4. */
export const FAMILY_IPV4 = 4;
/** SLUICE_FAMILY_IPV6. */
export const FAMILY_IPV6 = 6;
/** SLUICE_MAX_ENDPOINTS: capacity of the endpoints and devices maps. */
export const MAX_ENDPOINTS = 65536;

const MAC_LEN_BYTES = 6;
const IPV4_LEN_BYTES = 4;
const IPV6_LEN_BYTES = 16;

/** A C struct layout: total size and each member's byte offset, in declaration order. */
export interface StructLayout {
  name: string;
  size: number;
  members: Record<string, number>;
}

/** struct endpoint_key. */
export const ENDPOINT_KEY: StructLayout = {
  name: 'endpoint_key',
  size: 20,
  members: { family: 0, pad: 1, addr: 4 },
};

/** struct endpoint_info. */
export const ENDPOINT_INFO: StructLayout = {
  name: 'endpoint_info',
  size: 32,
  members: { ifindex: 0, endpoint_id: 4, identity: 8, flags: 12, mac: 16, host_mac: 22, ipv4: 28 },
};

/** struct counter_value. */
export const COUNTER_VALUE: StructLayout = {
  name: 'counter_value',
  size: 16,
  members: { packets: 0, bytes: 8 },
};

/** Size in bytes of the devices map key (a __u32 ifindex). */
export const DEVICE_KEY_SIZE = 4;
/** Size in bytes of the counters map key (a __u32 index). */
export const COUNTER_KEY_SIZE = 4;

/** enum sluice_counter without its SLUICE_CTR_ prefix: index into the counters map. */
export const Counter = {
  FROM_POD: 0,
  REDIRECT_LOCAL: 1,
  TO_STACK: 2,
  ARP_REPLY: 3,
  TO_POD: 4,
  DROP_SPOOF: 5,
  DROP_UNKNOWN_EP: 6,
  DROP_MALFORMED: 7,
  MAX: 16,
} as const;

/** The name of one real counter (every Counter key but MAX). */
export type CounterName = Exclude<keyof typeof Counter, 'MAX'>;

/** Every real counter name, in index order. */
export const COUNTER_NAMES: readonly CounterName[] = (Object.keys(Counter) as (keyof typeof Counter)[])
  .filter((name): name is CounterName => name !== 'MAX')
  .sort((a, b) => Counter[a] - Counter[b]);

/** Key of the endpoints map: one address of a local pod. */
export interface EndpointKey {
  family: typeof FAMILY_IPV4 | typeof FAMILY_IPV6;
  address: string;
}

/** Value of the endpoints and devices maps: a local pod interface. */
export interface EndpointInfo {
  /** The host-side veth. */
  ifindex: number;
  endpointId: number;
  identity: number;
  flags: number;
  /** The pod interface's MAC, 'aa:bb:cc:dd:ee:ff'. */
  mac: string;
  /** The host veth's MAC: the gateway as the pod sees it. */
  hostMac: string;
  /** The pod's IPv4 address, or null if it has none. */
  ipv4: string | null;
}

/** One CPU's struct counter_value. */
export interface CounterValue {
  packets: bigint;
  bytes: bigint;
}

/**
 * One counter summed over CPUs, as plain numbers so it serialises to JSON
 * (exact up to 2^53: 9 PB of bytes).
 */
export interface CounterTotal {
  packets: number;
  bytes: number;
}

/** Encodes an endpoints map key; throws on an address that does not match its family. */
export function encodeEndpointKey(key: EndpointKey): Buffer {
  const buf = Buffer.alloc(ENDPOINT_KEY.size);
  buf.writeUInt8(key.family, ENDPOINT_KEY.members.family);
  const addr = key.family === FAMILY_IPV4 ? parseFamily(key.address, 4) : parseFamily(key.address, 6);
  addr.copy(buf, ENDPOINT_KEY.members.addr);
  return buf;
}

/** Decodes an endpoints map key. */
export function decodeEndpointKey(buf: Buffer): EndpointKey {
  checkSize(buf, ENDPOINT_KEY);
  const family = buf.readUInt8(ENDPOINT_KEY.members.family);
  const at = ENDPOINT_KEY.members.addr;
  if (family === FAMILY_IPV4) return { family, address: formatIp(buf.subarray(at, at + IPV4_LEN_BYTES)) };
  if (family === FAMILY_IPV6) return { family, address: formatIp(buf.subarray(at, at + IPV6_LEN_BYTES)) };
  throw new Error(`decode endpoint key: unknown address family ${family}`);
}

/** Encodes an endpoints/devices map value; throws on a malformed MAC or address. */
export function encodeEndpointInfo(info: EndpointInfo): Buffer {
  const m = ENDPOINT_INFO.members;
  const buf = Buffer.alloc(ENDPOINT_INFO.size);
  buf.writeUInt32LE(info.ifindex, m.ifindex);
  buf.writeUInt32LE(info.endpointId, m.endpoint_id);
  buf.writeUInt32LE(info.identity, m.identity);
  buf.writeUInt32LE(info.flags, m.flags);
  parseMac(info.mac).copy(buf, m.mac);
  parseMac(info.hostMac).copy(buf, m.host_mac);
  if (info.ipv4 !== null) parseFamily(info.ipv4, 4).copy(buf, m.ipv4);
  return buf;
}

/** Decodes an endpoints/devices map value. */
export function decodeEndpointInfo(buf: Buffer): EndpointInfo {
  checkSize(buf, ENDPOINT_INFO);
  const m = ENDPOINT_INFO.members;
  const ipv4 = buf.subarray(m.ipv4, m.ipv4 + IPV4_LEN_BYTES);
  return {
    ifindex: buf.readUInt32LE(m.ifindex),
    endpointId: buf.readUInt32LE(m.endpoint_id),
    identity: buf.readUInt32LE(m.identity),
    flags: buf.readUInt32LE(m.flags),
    mac: formatMac(buf.subarray(m.mac, m.mac + MAC_LEN_BYTES)),
    hostMac: formatMac(buf.subarray(m.host_mac, m.host_mac + MAC_LEN_BYTES)),
    ipv4: ipv4.every((b) => b === 0) ? null : formatIp(ipv4),
  };
}

/** Encodes a __u32 map key (devices: ifindex; counters: Counter index). */
export function encodeU32(value: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32LE(value);
  return buf;
}

/** Decodes a __u32 map key. */
export function decodeU32(buf: Buffer): number {
  return buf.readUInt32LE(0);
}

/** Decodes one CPU's struct counter_value. */
export function decodeCounterValue(buf: Buffer): CounterValue {
  checkSize(buf, COUNTER_VALUE);
  return {
    packets: buf.readBigUInt64LE(COUNTER_VALUE.members.packets),
    bytes: buf.readBigUInt64LE(COUNTER_VALUE.members.bytes),
  };
}

function checkSize(buf: Buffer, layout: StructLayout): void {
  if (buf.length < layout.size) {
    throw new Error(`decode ${layout.name}: ${buf.length} bytes, need ${layout.size}`);
  }
}

/** Parses an address of the family, which it must be. */
function parseFamily(address: string, family: 4 | 6): Buffer {
  const ip = parseIp(address);
  if (ip.family !== family) throw new Error(`invalid IPv${family} address ${JSON.stringify(address)}`);
  return Buffer.from(ip.bytes);
}

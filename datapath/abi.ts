/**
 * The TypeScript mirror of bpf/sluice.h: sizes, offsets, constants and the
 * encoders/decoders of every map key and value. test/abi.test.ts compares the
 * layouts here with the BTF of the compiled object, so a change on one side
 * only fails the build, never the datapath.
 *
 * Multi-byte integers are in host order (little-endian on x86_64 and arm64,
 * the only targets); addresses and MACs are bytes in network order.
 */
import { formatIp, formatMac, parseIp, parseMac } from '../lib/ip-bytes.ts';
import { PROTOCOL_ANY } from '../lib/protocols.ts';

/** SLUICE_FAMILY_IPV4. */
export const FAMILY_IPV4 = 4;
/** SLUICE_FAMILY_IPV6. */
export const FAMILY_IPV6 = 6;
/** SLUICE_MAX_ENDPOINTS: capacity of the endpoints and devices maps. */
export const MAX_ENDPOINTS = 65536;

/**
 * Reserved identities (SLUICE_ID_*); pods get FIRST_POD and up, address
 * selectors FIRST_CIDR_SELECTOR and up. The one table, with the names people
 * read, is lib/identity-numbers.ts, so that policy/ numbers identities
 * without importing this mirror; test/abi.test.ts checks it here.
 */
export { Identity } from '../lib/identity-numbers.ts';

/** struct endpoint_info.flags bits (SLUICE_EP_*). */
export const EndpointFlag = {
  INGRESS_ISOLATED: 1 << 0,
  EGRESS_ISOLATED: 1 << 1,
} as const;

/** Policy directions (SLUICE_DIR_*), seen from the endpoint the policy belongs to. */
export const Direction = {
  INGRESS: 1,
  EGRESS: 2,
} as const;

/** SLUICE_VXLAN_PORT: the overlay's UDP port, which from-pod keeps pods away from on every node. */
export const VXLAN_PORT = 4789;

/** SLUICE_PROTO_ANY: a policy entry for every protocol. The value lives with the protocol table (lib/protocols.ts), which policy/ reads without the kernel mirror. */
export const PROTO_ANY = PROTOCOL_ANY;

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
  size: 52,
  members: { ifindex: 0, endpoint_id: 4, identity: 8, flags: 12, policy_rev: 16, mac: 20, host_mac: 26, ipv4: 32, ipv6: 36 },
};

/** struct ipcache_key (LPM trie key). */
export const IPCACHE_KEY: StructLayout = {
  name: 'ipcache_key',
  size: 24,
  members: { prefixlen: 0, family: 4, pad: 5, addr: 8 },
};

/** struct ipcache_value. */
export const IPCACHE_VALUE: StructLayout = { name: 'ipcache_value', size: 8, members: { identity: 0, flags: 4 } };

/** struct policy_key (LPM trie key). */
export const POLICY_KEY: StructLayout = {
  name: 'policy_key',
  size: 16,
  members: { prefixlen: 0, policy_id: 4, peer: 8, direction: 12, protocol: 13, port: 14 },
};

/** struct policy_value. */
export const POLICY_VALUE: StructLayout = { name: 'policy_value', size: 4, members: { flags: 0 } };

/** struct cidr_policy_key (LPM trie key). */
export const CIDR_POLICY_KEY: StructLayout = {
  name: 'cidr_policy_key',
  size: 28,
  members: { prefixlen: 0, policy_id: 4, direction: 8, family: 9, pad: 10, addr: 12 },
};

/** struct cidr_policy_value. */
export const CIDR_POLICY_VALUE: StructLayout = { name: 'cidr_policy_value', size: 4, members: { selector: 0 } };

const BITS_PER_BYTE = 8;

/** Bits of an LPM key from member `from` up to member `to`: SLUICE_LPM_BITS(). Throws on a member the layout lacks. */
function lpmBits(layout: StructLayout, from: string, to: string): number {
  const start = layout.members[from];
  const end = layout.members[to];
  if (start === undefined || end === undefined) throw new Error(`struct ${layout.name} has no member ${from} or ${to}`);
  return (end - start) * BITS_PER_BYTE;
}

// The bits after prefixlen an LPM key always matches in full (enum sluice_lpm_fixed_bits): a key's
// prefixlen is these plus its prefix's bits. Computed from the layouts above, as the C side computes them.
/** SLUICE_IPCACHE_FIXED_BITS: ipcache_key family + pad (32). */
export const IPCACHE_FIXED_BITS = lpmBits(IPCACHE_KEY, 'family', 'addr');
/** SLUICE_POLICY_FIXED_BITS: policy_key policy_id + peer + direction + protocol (80). */
export const POLICY_FIXED_BITS = lpmBits(POLICY_KEY, 'policy_id', 'port');
/** SLUICE_CIDR_POLICY_FIXED_BITS: cidr_policy_key policy_id + direction + family + pad (64). */
export const CIDR_POLICY_FIXED_BITS = lpmBits(CIDR_POLICY_KEY, 'policy_id', 'addr');

/** struct ct_key. */
export const CT_KEY: StructLayout = {
  name: 'ct_key',
  size: 40,
  members: { saddr: 0, daddr: 16, sport: 32, dport: 34, protocol: 36, family: 37, pad: 38 },
};

/** struct ct_value. */
export const CT_VALUE: StructLayout = {
  name: 'ct_value',
  size: 56,
  members: { created_ns: 0, last_seen_ns: 8, packets: 16, flags: 24, src_endpoint: 28, dst_endpoint: 32, src_policy_rev: 36, dst_policy_rev: 40, src_identity: 44, dst_identity: 48, charged: 52 },
};

/** struct frag_key: a fragmented datagram as one endpoint's program saw it. */
export const FRAG_KEY: StructLayout = {
  name: 'frag_key',
  size: 44,
  members: { saddr: 0, daddr: 16, id: 32, endpoint: 36, protocol: 40, family: 41, direction: 42, pad: 43 },
};

/** struct frag_value: its first fragment's ports and transport protocol, and how much of it was seen. */
export const FRAG_VALUE: StructLayout = {
  name: 'frag_value',
  size: 32,
  members: { created_ns: 0, seen_bytes: 8, total_bytes: 16, sport: 24, dport: 26, protocol: 28, untracked: 29, pad: 30 },
};

/** struct ep_counter_key. */
export const EP_COUNTER_KEY: StructLayout = { name: 'ep_counter_key', size: 8, members: { endpoint_id: 0, counter: 4 } };

/** struct datapath_config: the one entry of the `config` array. */
export const DATAPATH_CONFIG: StructLayout = {
  name: 'datapath_config',
  size: 28,
  members: { ct_timeout_tcp_sec: 0, ct_timeout_closing_sec: 4, ct_timeout_other_sec: 8, ct_max_per_endpoint: 12, frag_max_per_endpoint: 16, frag_timeout_sec: 20, l7_off: 24 },
};

/** SLUICE_CT_TIMEOUT_TCP_SEC: idle time after which an open TCP flow must pass policy again, when the agent sets none. */
export const CT_TIMEOUT_TCP_SEC = 21600;
/** SLUICE_CT_TIMEOUT_CLOSING_SEC: likewise for a TCP flow after a FIN. */
export const CT_TIMEOUT_CLOSING_SEC = 10;
/** SLUICE_CT_TIMEOUT_OTHER_SEC: likewise for UDP, ICMP and everything else. */
export const CT_TIMEOUT_OTHER_SEC = 60;

/** SLUICE_CT_MAX_PER_ENDPOINT: the conntrack budget of one endpoint when the agent sets none. */
export const CT_MAX_PER_ENDPOINT = 65536;
/** SLUICE_CT_RESERVE_PER_ENDPOINT: an endpoint's first entries, set aside for it alone. */
export const CT_RESERVE_PER_ENDPOINT = 1024;
/** SLUICE_CT_RESERVED_ENDPOINTS: how many endpoints' reserves the table sets aside. */
export const CT_RESERVED_ENDPOINTS = 128;
/** SLUICE_CT_BUCKET_REMOTE: in a ct_counts key, a remote opener's bucket (| its identity), not an endpoint. */
export const CT_BUCKET_REMOTE = 2 ** 31;
/** SLUICE_CT_SHARED_KEY: the ct_counts key counting the shared part of the table. */
export const CT_SHARED_KEY = 0xffffffff;

/** SLUICE_FRAG_MAX_PER_ENDPOINT: fragmented datagrams one endpoint may have in flight when the agent sets no budget. */
export const FRAG_MAX_PER_ENDPOINT = 1024;

/** SLUICE_FRAG_TIMEOUT_SEC: how long an incomplete datagram's entry lives when the agent sets nothing else. */
export const FRAG_TIMEOUT_SEC = 30;

/** struct ct_count: value of ct_counts (endpoint id -> conntrack and fragment entries charged to it). */
export const CT_COUNT: StructLayout = { name: 'ct_count', size: 16, members: { entries: 0, fragments: 8 } };

/** struct lb_nat_key: one direction of a flow from_pod translated to a Service backend (bpf/service-nat.h). */
export const LB_NAT_KEY: StructLayout = {
  name: 'lb_nat_key',
  size: 40,
  members: { saddr: 0, daddr: 16, sport: 32, dport: 34, family: 36, protocol: 37, dir: 38, pad: 39 },
};

/** struct lb_nat_value: the original direction's backend, or the reply direction's frontend. */
export const LB_NAT_VALUE: StructLayout = { name: 'lb_nat_value', size: 24, members: { addr: 0, port: 16, pad: 18, backend_id: 20 } };

/** struct lb_nat_affinity_key: sessionAffinity of the per-packet path, per client address and frontend (value: service-lb-abi.ts's LB_AFFINITY_VALUE). */
export const LB_NAT_AFFINITY_KEY: StructLayout = {
  name: 'lb_nat_affinity_key',
  size: 36,
  members: { client: 0, frontend: 16, port: 32, protocol: 34, family: 35 },
};

/** enum sluice_nat_dir: lb_nat_key.dir. */
export const NatDir = { ORIGINAL: 1, REPLY: 2 } as const;

/** struct ct_sweep_result: the context ct_sweep writes back. */
export const CT_SWEEP_RESULT: StructLayout = {
  name: 'ct_sweep_result',
  size: 24,
  members: { scanned: 0, expired: 4, stale: 8, frag_scanned: 12, frag_expired: 16, pad: 20 },
};

/** What one run of ct_sweep saw and removed, in the conntrack and the fragment table. */
export interface CtSweepResult {
  scanned: number;
  expired: number;
  stale: number;
  fragScanned: number;
  fragExpired: number;
}

/** Decodes the context ct_sweep wrote back. */
export function decodeCtSweepResult(buf: Buffer): CtSweepResult {
  checkSize(buf, CT_SWEEP_RESULT);
  const m = CT_SWEEP_RESULT.members;
  return {
    scanned: buf.readUInt32LE(m.scanned),
    expired: buf.readUInt32LE(m.expired),
    stale: buf.readUInt32LE(m.stale),
    fragScanned: buf.readUInt32LE(m.frag_scanned),
    fragExpired: buf.readUInt32LE(m.frag_expired),
  };
}

/** Decodes a ct_counts value: the conntrack entries charged. */
export function decodeCtCount(buf: Buffer): number {
  checkSize(buf, CT_COUNT);
  return Number(buf.readBigInt64LE(CT_COUNT.members.entries));
}

/** Decodes a ct_counts value: the fragment entries charged. */
export function decodeFragCount(buf: Buffer): number {
  checkSize(buf, CT_COUNT);
  return Number(buf.readBigInt64LE(CT_COUNT.members.fragments));
}

/** Runtime settings of the datapath; 0 (or absent) keeps the compiled-in default. */
export interface DatapathConfig {
  ctTimeoutTcpSec?: number;
  ctTimeoutClosingSec?: number;
  ctTimeoutOtherSec?: number;
  /** Conntrack entries one endpoint may hold (SLUICE_CT_MAX_PER_ENDPOINT when 0). */
  ctMaxPerEndpoint?: number;
  /** Fragmented datagrams one endpoint may have in flight (SLUICE_FRAG_MAX_PER_ENDPOINT when 0). */
  fragMaxPerEndpoint?: number;
  /** Lifetime of an incomplete datagram's entry (SLUICE_FRAG_TIMEOUT_SEC when 0). */
  fragTimeoutSec?: number;
  /** No L7 events: the datapath does not even look at payloads. */
  l7Off?: boolean;
}

/** Encodes the config entry. */
export function encodeDatapathConfig(c: DatapathConfig): Buffer {
  const m = DATAPATH_CONFIG.members;
  const buf = Buffer.alloc(DATAPATH_CONFIG.size);
  buf.writeUInt32LE(c.ctTimeoutTcpSec ?? 0, m.ct_timeout_tcp_sec);
  buf.writeUInt32LE(c.ctTimeoutClosingSec ?? 0, m.ct_timeout_closing_sec);
  buf.writeUInt32LE(c.ctTimeoutOtherSec ?? 0, m.ct_timeout_other_sec);
  buf.writeUInt32LE(c.ctMaxPerEndpoint ?? 0, m.ct_max_per_endpoint);
  buf.writeUInt32LE(c.fragMaxPerEndpoint ?? 0, m.frag_max_per_endpoint);
  buf.writeUInt32LE(c.fragTimeoutSec ?? 0, m.frag_timeout_sec);
  buf.writeUInt32LE(c.l7Off ? 1 : 0, m.l7_off);
  return buf;
}

/** struct event: one monitor event from the ring buffer. */
export const EVENT: StructLayout = {
  name: 'event',
  size: 88,
  members: {
    timestamp_ns: 0,
    type: 8,
    reason: 12,
    src_identity: 16,
    dst_identity: 20,
    src_endpoint: 24,
    dst_endpoint: 28,
    saddr: 32,
    daddr: 48,
    sport: 64,
    dport: 66,
    protocol: 68,
    family: 69,
    direction: 70,
    verdict: 71,
    ifindex: 72,
    len: 76,
    tcp_flags: 80,
    is_reply: 81,
    payload_len: 82,
    reserved: 84,
  },
};

/** struct l7_event: an event, then the first SLUICE_L7_PAYLOAD_BYTES of an L7 message's payload. */
export const L7_EVENT: StructLayout = {
  name: 'l7_event',
  size: 344,
  members: { event: 0, payload: 88 },
};

/** SLUICE_L7_PAYLOAD_BYTES. */
export const L7_PAYLOAD_BYTES = 256;

/** SLUICE_EVENT_*. */
export const EventType = { VERDICT: 1, DROP: 2, L7: 3 } as const;
/** SLUICE_EVENT_BUCKET_*: the rate-limit buckets of the events. */
export const EventBucket = { FLOWS: 0, L7: 1 } as const;
/** SLUICE_VERDICT_*. */
export const Verdict = { ALLOWED: 1, DENIED: 2 } as const;

/** A decoded monitor event. */
export interface DatapathEvent {
  timestampNs: bigint;
  type: number;
  /** A Counter index: the drop reason, or POLICY_ALLOWED. */
  reason: number;
  srcIdentity: number;
  dstIdentity: number;
  srcEndpoint: number;
  dstEndpoint: number;
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  protocol: number;
  direction: number;
  verdict: number;
  ifindex: number;
  len: number;
  /** Of a TCP packet: its flags byte. */
  tcpFlags: number;
  isReply: boolean;
  /** Of an L7 event: the first bytes of the message's payload; empty otherwise. */
  payload: Buffer;
}

/**
 * IPv4 addresses of recent events, as text: a node's events name the same few
 * thousand addresses over and over, and formatting one costs more than the
 * rest of the event's decoding. Bounded: emptied when full.
 */
const ipv4Text = new Map<number, string>();
const IPV4_TEXT_CACHE_ENTRIES = 65_536;

function eventAddress(buf: Buffer, at: number, family: 4 | 6): string {
  if (family === 4) {
    const n = buf.readUInt32BE(at);
    if (n === 0) return '';
    let text = ipv4Text.get(n);
    if (text === undefined) {
      if (ipv4Text.size >= IPV4_TEXT_CACHE_ENTRIES) ipv4Text.clear();
      text = `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
      ipv4Text.set(n, text);
    }
    return text;
  }
  const bytes = buf.subarray(at, at + IPV6_LEN_BYTES);
  return bytes.every((b) => b === 0) ? '' : formatIp(bytes);
}

/** Decodes one struct event, or struct l7_event. */
export function decodeEvent(buf: Buffer): DatapathEvent {
  checkSize(buf, EVENT);
  const m = EVENT.members;
  const family = buf.readUInt8(m.family) === FAMILY_IPV6 ? 6 : 4;
  const addr = (at: number) => eventAddress(buf, at, family);
  return {
    timestampNs: buf.readBigUInt64LE(m.timestamp_ns),
    type: buf.readUInt32LE(m.type),
    reason: buf.readUInt32LE(m.reason),
    srcIdentity: buf.readUInt32LE(m.src_identity),
    dstIdentity: buf.readUInt32LE(m.dst_identity),
    srcEndpoint: buf.readUInt32LE(m.src_endpoint),
    dstEndpoint: buf.readUInt32LE(m.dst_endpoint),
    family,
    src: addr(m.saddr),
    dst: addr(m.daddr),
    sport: buf.readUInt16BE(m.sport),
    dport: buf.readUInt16BE(m.dport),
    protocol: buf.readUInt8(m.protocol),
    direction: buf.readUInt8(m.direction),
    verdict: buf.readUInt8(m.verdict),
    ifindex: buf.readUInt32LE(m.ifindex),
    len: buf.readUInt32LE(m.len),
    tcpFlags: buf.readUInt8(m.tcp_flags),
    isReply: buf.readUInt8(m.is_reply) !== 0,
    payload: l7Payload(buf),
  };
}

/** The payload an L7 event carries (a copy: the ring buffer's memory is reused). */
function l7Payload(buf: Buffer): Buffer {
  if (buf.readUInt32LE(EVENT.members.type) !== EventType.L7) return Buffer.alloc(0);
  checkSize(buf, L7_EVENT);
  const len = Math.min(buf.readUInt16LE(EVENT.members.payload_len), L7_PAYLOAD_BYTES);
  const at = L7_EVENT.members.payload;
  return Buffer.from(buf.subarray(at, at + len));
}

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
  DROP_POLICY_INGRESS: 8,
  DROP_POLICY_EGRESS: 9,
  DROP_FRAGMENT: 10,
  POLICY_ALLOWED: 11,
  CT_ESTABLISHED: 12,
  EVENTS_LOST: 13,
  CT_RELATED: 14,
  DROP_ICMP_UNRELATED: 15,
  DROP_TUNNEL: 16,
  DROP_CT_FULL: 17,
  DROP_FRAG_FULL: 18,
  DROP_REVOKED: 19,
  SERVICE_DNAT: 20,
  SERVICE_REVNAT: 21,
  SERVICE_REFUSED: 22,
  MAX: 32,
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
  /** Revision of the endpoint's policy; its low bit picks the live slot (policyId()). */
  policyRev: number;
  /** The pod interface's MAC, 'aa:bb:cc:dd:ee:ff'. */
  mac: string;
  /** The host veth's MAC: the gateway as the pod sees it. */
  hostMac: string;
  /** The pod's IPv4 address, or null if it has none. */
  ipv4: string | null;
  /** The pod's IPv6 address, or null if it has none. */
  ipv6: string | null;
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
  buf.writeUInt32LE(info.policyRev, m.policy_rev);
  parseMac(info.mac).copy(buf, m.mac);
  parseMac(info.hostMac).copy(buf, m.host_mac);
  if (info.ipv4 !== null) parseFamily(info.ipv4, 4).copy(buf, m.ipv4);
  if (info.ipv6 !== null) parseFamily(info.ipv6, 6).copy(buf, m.ipv6);
  return buf;
}

/** Decodes an endpoints/devices map value. */
export function decodeEndpointInfo(buf: Buffer): EndpointInfo {
  checkSize(buf, ENDPOINT_INFO);
  const m = ENDPOINT_INFO.members;
  const ipv4 = buf.subarray(m.ipv4, m.ipv4 + IPV4_LEN_BYTES);
  const ipv6 = buf.subarray(m.ipv6, m.ipv6 + IPV6_LEN_BYTES);
  return {
    ifindex: buf.readUInt32LE(m.ifindex),
    endpointId: buf.readUInt32LE(m.endpoint_id),
    identity: buf.readUInt32LE(m.identity),
    flags: buf.readUInt32LE(m.flags),
    policyRev: buf.readUInt32LE(m.policy_rev),
    mac: formatMac(buf.subarray(m.mac, m.mac + MAC_LEN_BYTES)),
    hostMac: formatMac(buf.subarray(m.host_mac, m.host_mac + MAC_LEN_BYTES)),
    ipv4: ipv4.every((b) => b === 0) ? null : formatIp(ipv4),
    ipv6: ipv6.every((b) => b === 0) ? null : formatIp(ipv6),
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

/** An address prefix: an ipcache key, or the address part of a cidr_policy key. */
export interface Prefix {
  family: 4 | 6;
  address: string;
  prefixLength: number;
}

function addressBytes(p: Prefix): Buffer {
  const bytes = Buffer.alloc(IPV6_LEN_BYTES);
  parseFamily(p.address, p.family).copy(bytes);
  return bytes;
}

/** Encodes an ipcache key for a prefix. */
export function encodeIpcacheKey(p: Prefix): Buffer {
  const buf = Buffer.alloc(IPCACHE_KEY.size);
  buf.writeUInt32LE(IPCACHE_FIXED_BITS + p.prefixLength, IPCACHE_KEY.members.prefixlen);
  buf.writeUInt8(p.family, IPCACHE_KEY.members.family);
  addressBytes(p).copy(buf, IPCACHE_KEY.members.addr);
  return buf;
}

/** Encodes an ipcache value. */
export function encodeIpcacheValue(identity: number): Buffer {
  const buf = Buffer.alloc(IPCACHE_VALUE.size);
  buf.writeUInt32LE(identity, IPCACHE_VALUE.members.identity);
  return buf;
}

/** Decodes an ipcache key to its prefix. */
export function decodeIpcacheKey(buf: Buffer): Prefix {
  checkSize(buf, IPCACHE_KEY);
  const family = buf.readUInt8(IPCACHE_KEY.members.family) as 4 | 6;
  const len = family === FAMILY_IPV4 ? IPV4_LEN_BYTES : IPV6_LEN_BYTES;
  const at = IPCACHE_KEY.members.addr;
  return { family, address: formatIp(buf.subarray(at, at + len)), prefixLength: buf.readUInt32LE(0) - IPCACHE_FIXED_BITS };
}

/**
 * SLUICE_POLICY_ID: the policy id of an endpoint's slot for a revision. An
 * endpoint's rule set is written into the slot its next revision will use,
 * then the endpoint switches over: never a mix of two rule sets.
 */
export function policyId(endpointId: number, policyRev: number): number {
  return ((endpointId << 1) | (policyRev & 1)) >>> 0;
}

/** One policy map entry: the endpoint may open flows with the peer on the port prefix. */
export interface PolicyEntry {
  /** policyId() of the endpoint slot the entry belongs to. */
  policyId: number;
  direction: number;
  peer: number;
  /** IPPROTO_* or PROTO_ANY. */
  protocol: number;
  /** Port prefix: the first portPrefixLength bits of port (0 with PROTO_ANY). */
  port: number;
  portPrefixLength: number;
}

/** Encodes a policy map key. */
export function encodePolicyKey(e: PolicyEntry): Buffer {
  const m = POLICY_KEY.members;
  const buf = Buffer.alloc(POLICY_KEY.size);
  buf.writeUInt32LE(POLICY_FIXED_BITS + e.portPrefixLength, m.prefixlen);
  buf.writeUInt32LE(e.policyId, m.policy_id);
  buf.writeUInt32LE(e.peer, m.peer);
  buf.writeUInt8(e.direction, m.direction);
  buf.writeUInt8(e.protocol, m.protocol);
  buf.writeUInt16BE(e.port, m.port);
  return buf;
}

/** Decodes a policy map key. */
export function decodePolicyKey(buf: Buffer): PolicyEntry {
  checkSize(buf, POLICY_KEY);
  const m = POLICY_KEY.members;
  return {
    policyId: buf.readUInt32LE(m.policy_id),
    direction: buf.readUInt8(m.direction),
    peer: buf.readUInt32LE(m.peer),
    protocol: buf.readUInt8(m.protocol),
    port: buf.readUInt16BE(m.port),
    portPrefixLength: buf.readUInt32LE(m.prefixlen) - POLICY_FIXED_BITS,
  };
}

/** The (allowing) policy map value. */
export function encodePolicyValue(): Buffer {
  return Buffer.alloc(POLICY_VALUE.size);
}

/** One cidr_policy entry: peers of the endpoint in this prefix are the selector. */
export interface CidrPolicyEntry extends Prefix {
  /** policyId() of the endpoint slot, as in PolicyEntry. */
  policyId: number;
  direction: number;
  selector: number;
}

/** Encodes a cidr_policy key. */
export function encodeCidrPolicyKey(e: Omit<CidrPolicyEntry, 'selector'>): Buffer {
  const m = CIDR_POLICY_KEY.members;
  const buf = Buffer.alloc(CIDR_POLICY_KEY.size);
  buf.writeUInt32LE(CIDR_POLICY_FIXED_BITS + e.prefixLength, m.prefixlen);
  buf.writeUInt32LE(e.policyId, m.policy_id);
  buf.writeUInt8(e.direction, m.direction);
  buf.writeUInt8(e.family, m.family);
  addressBytes(e).copy(buf, m.addr);
  return buf;
}

/** Encodes a cidr_policy value. */
export function encodeCidrPolicyValue(selector: number): Buffer {
  const buf = Buffer.alloc(CIDR_POLICY_VALUE.size);
  buf.writeUInt32LE(selector, CIDR_POLICY_VALUE.members.selector);
  return buf;
}

/** Encodes a per-endpoint counter key. */
export function encodeEpCounterKey(endpointId: number, counter: number): Buffer {
  const buf = Buffer.alloc(EP_COUNTER_KEY.size);
  buf.writeUInt32LE(endpointId, EP_COUNTER_KEY.members.endpoint_id);
  buf.writeUInt32LE(counter, EP_COUNTER_KEY.members.counter);
  return buf;
}

/** Decodes a per-endpoint counter key. */
export function decodeEpCounterKey(buf: Buffer): { endpointId: number; counter: number } {
  checkSize(buf, EP_COUNTER_KEY);
  return { endpointId: buf.readUInt32LE(0), counter: buf.readUInt32LE(4) };
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

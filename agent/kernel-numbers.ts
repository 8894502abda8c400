/**
 * The numbers the pinned maps still use: endpoint ids, pod identities and
 * address selectors. After a lost endpoint or numbering store, a number any
 * map still holds must never be handed out again: conntrack binds flows to
 * endpoint ids and identities ("ids are never reused", bpf/sluice.h), and
 * policy entries name peers by identity. So the next number handed out is
 * above the highest one found here. Read once at start, on the rebuild path
 * only (it walks conntrack).
 */
import {
  CIDR_POLICY_KEY,
  CT_SHARED_KEY,
  CT_VALUE,
  FRAG_KEY,
  Identity,
  decodeEndpointInfo,
  decodeEndpointKey,
  decodeEpCounterKey,
  decodeIpcacheKey,
  decodePolicyKey,
} from '../datapath/abi.ts';
import type { BpfMap } from '../datapath/bpf-map.ts';

/** ct_counts key bit of a remote opener's bucket (SLUICE_CT_BUCKET_REMOTE): the rest is its identity. */
const CT_BUCKET_REMOTE = 0x8000_0000;

type Readable = Pick<BpfMap, 'keys' | 'lookup'>;

/** The maps read. */
export type NumberedMaps = { [K in 'endpoints' | 'devices' | 'ipcache' | 'policy' | 'cidr_policy' | 'conntrack' | 'ct_counts' | 'ep_counters' | 'fragments']: Readable };

/** One local endpoint as the endpoint map holds it: its addresses and its entry. */
export interface MappedEndpoint {
  endpointId: number;
  ifindex: number;
  identity: number;
  mac: string;
  hostMac: string;
  ips: string[];
}

/** What the maps hold. */
export interface KernelNumbers {
  /** The highest endpoint id any map names (0: none). */
  maxEndpointId: number;
  /** The highest pod identity any map names (Identity.FIRST_POD - 1: none). */
  maxIdentity: number;
  /** The highest address selector any map names (Identity.FIRST_CIDR_SELECTOR: none). */
  maxSelector: number;
  /** The identity of each pod address (host prefixes of the ipcache, and the endpoint map's addresses). */
  identityOfAddress: Map<string, number>;
  /** The local endpoints of the endpoint map, by id. */
  endpoints: Map<number, MappedEndpoint>;
}

function isPodIdentity(n: number): boolean {
  return n >= Identity.FIRST_POD && n < Identity.FIRST_CIDR_SELECTOR;
}

/** Walks map, calling fn with each key and value still there. */
function each(map: Readable, fn: (key: Buffer, value: Buffer) => void): void {
  for (const key of map.keys()) {
    const value = map.lookup(key);
    if (value !== null) fn(key, value);
  }
}

/** Reads the numbers the maps use. Throws what a map read throws. */
export function readKernelNumbers(maps: NumberedMaps): KernelNumbers {
  const out: KernelNumbers = {
    maxEndpointId: 0,
    maxIdentity: Identity.FIRST_POD - 1,
    maxSelector: Identity.FIRST_CIDR_SELECTOR,
    identityOfAddress: new Map(),
    endpoints: new Map(),
  };
  const endpointId = (id: number): void => {
    if (id !== CT_SHARED_KEY && id > out.maxEndpointId) out.maxEndpointId = id;
  };
  const peer = (n: number): void => {
    if (isPodIdentity(n)) out.maxIdentity = Math.max(out.maxIdentity, n);
    else if (n > Identity.FIRST_CIDR_SELECTOR) out.maxSelector = Math.max(out.maxSelector, n);
  };
  // An identity, or the charged/ct_counts key: an endpoint id, or a remote bucket of an identity.
  const bucket = (n: number): void => {
    if (n === CT_SHARED_KEY) return;
    if (n & CT_BUCKET_REMOTE) peer(n & ~CT_BUCKET_REMOTE);
    else endpointId(n);
  };

  each(maps.endpoints, (key, value) => {
    const info = decodeEndpointInfo(value);
    const address = decodeEndpointKey(key).address;
    endpointId(info.endpointId);
    peer(info.identity);
    if (isPodIdentity(info.identity)) out.identityOfAddress.set(address, info.identity);
    let ep = out.endpoints.get(info.endpointId);
    if (!ep) out.endpoints.set(info.endpointId, (ep = { endpointId: info.endpointId, ifindex: info.ifindex, identity: info.identity, mac: info.mac, hostMac: info.hostMac, ips: [] }));
    ep.ips.push(address);
  });
  each(maps.devices, (_key, value) => {
    const info = decodeEndpointInfo(value);
    endpointId(info.endpointId);
    peer(info.identity);
  });
  each(maps.ipcache, (key, value) => {
    const identity = value.readUInt32LE(0);
    peer(identity);
    const prefix = decodeIpcacheKey(key);
    // The ipcache is the compiled view (local endpoints' addresses first); the endpoint map agrees with it.
    if (isPodIdentity(identity) && prefix.prefixLength === (prefix.family === 6 ? 128 : 32)) out.identityOfAddress.set(prefix.address, identity);
  });
  each(maps.policy, (key) => {
    const entry = decodePolicyKey(key);
    endpointId(entry.policyId >>> 1);
    peer(entry.peer);
  });
  each(maps.cidr_policy, (key, value) => {
    endpointId(key.readUInt32LE(CIDR_POLICY_KEY.members.policy_id!) >>> 1);
    peer(value.readUInt32LE(0));
  });
  // Keys only: ep_counters is per-CPU, and the keys say all there is to know.
  for (const key of maps.ep_counters.keys()) endpointId(decodeEpCounterKey(key).endpointId);
  for (const key of maps.ct_counts.keys()) bucket(key.readUInt32LE(0));
  for (const key of maps.fragments.keys()) endpointId(key.readUInt32LE(FRAG_KEY.members.endpoint!));
  const m = CT_VALUE.members;
  each(maps.conntrack, (_key, value) => {
    endpointId(value.readUInt32LE(m.src_endpoint!));
    endpointId(value.readUInt32LE(m.dst_endpoint!));
    peer(value.readUInt32LE(m.src_identity!));
    peer(value.readUInt32LE(m.dst_identity!));
    bucket(value.readUInt32LE(m.charged!));
  });
  return out;
}

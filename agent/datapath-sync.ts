/**
 * Keeps the datapath's maps equal to what the endpoints, the cluster and its
 * policies call for: compiles the whole state (pure, policy/compile.ts),
 * diffs it against what the maps hold, and writes only the difference, in an
 * order that never opens a window: allow entries and addresses go in before
 * an endpoint becomes isolated, and come out only after it stops being.
 */
import {
  EndpointFlag,
  Identity,
  encodeCidrPolicyKey,
  encodeCidrPolicyValue,
  encodeEndpointInfo,
  encodeEndpointKey,
  encodeIpcacheKey,
  encodeIpcacheValue,
  encodePolicyKey,
  encodePolicyValue,
  type EndpointInfo,
} from '../datapath/abi.ts';
import type { BpfMap } from '../datapath/bpf-map.ts';
import { compile, CompileCache, type CompiledEndpoint, type CompiledState } from '../policy/compile.ts';
import type { Numbering } from '../policy/identity.ts';
import type { ClusterView } from '../policy/types.ts';
import type { Endpoint } from './api-types.ts';

/** The maps this module owns. */
export interface SyncedMaps {
  endpoints: BpfMap;
  devices: BpfMap;
  ipcache: BpfMap;
  policy: BpfMap;
  cidr_policy: BpfMap;
}

/** What one sync changed. */
export interface SyncStats {
  written: number;
  deleted: number;
  durationMs: number;
}

type MapName = keyof SyncedMaps;
type Contents = Map<string, string>; // key hex → value hex

/** Write order: what may allow more goes in first, what identifies and isolates next. */
const UPSERT_ORDER: MapName[] = ['ipcache', 'policy', 'cidr_policy', 'endpoints', 'devices'];
/** Delete order: endpoints first (nothing points at them then), addresses last. */
const DELETE_ORDER: MapName[] = ['devices', 'endpoints', 'policy', 'cidr_policy', 'ipcache'];

function hostPrefixLength(ip: string): number {
  return ip.includes(':') ? 128 : 32;
}

/** Encodes a host ifindex as the devices map key (host byte order __u32). */
export function deviceKey(ifindex: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(ifindex);
  return key;
}

/** Owns the contents of the endpoint, ipcache and policy maps. */
export class DatapathSync {
  private readonly maps: SyncedMaps;
  private readonly numbering: Numbering;
  private readonly current = new Map<MapName, Contents>();
  private compiled: CompiledState | null = null;
  private readonly cache = new CompileCache();
  /** Encoded policy entries of a compiled endpoint: the compiler hands back the same object while it is unchanged. */
  private readonly encoded = new WeakMap<CompiledEndpoint, { policy: [string, string][]; cidr: [string, string][] }>();

  /** The cluster's Service (ClusterIP) ranges: the ipcache names them so from-pod leaves their egress check to the backend. */
  private readonly serviceCidrs: string[];

  constructor(maps: SyncedMaps, numbering: Numbering, serviceCidrs: string[] = []) {
    this.maps = maps;
    this.numbering = numbering;
    this.serviceCidrs = serviceCidrs;
    // The maps may outlive agents: start from what they hold, so the first sync is a diff too.
    for (const name of UPSERT_ORDER) {
      const contents: Contents = new Map();
      const map = maps[name];
      for (const key of map.keys()) {
        const value = map.lookup(key);
        if (value) contents.set(key.toString('hex'), value.toString('hex'));
      }
      this.current.set(name, contents);
    }
  }

  /** The state the last sync compiled (null before the first). */
  state(): CompiledState | null {
    return this.compiled;
  }

  /** Compiles the desired state and writes its difference from the maps. */
  apply(view: ClusterView, endpoints: Endpoint[], hostAddresses: string[], nodeAddresses: string[] = []): SyncStats {
    const started = performance.now();
    const local = endpoints.map((e) => ({ endpointId: e.id, namespace: e.namespace, pod: e.pod, ips: e.ips }));
    const compiled = compile(view, local, this.numbering, this.cache);
    const desired = this.desired(compiled, endpoints, hostAddresses, nodeAddresses);
    let written = 0;
    let deleted = 0;
    for (const name of UPSERT_ORDER) {
      const have = this.current.get(name)!;
      for (const [key, value] of desired.get(name)!) {
        if (have.get(key) === value) continue;
        this.maps[name].update(Buffer.from(key, 'hex'), Buffer.from(value, 'hex'));
        have.set(key, value);
        written++;
      }
    }
    for (const name of DELETE_ORDER) {
      const have = this.current.get(name)!;
      const want = desired.get(name)!;
      for (const key of [...have.keys()]) {
        if (want.has(key)) continue;
        this.maps[name].delete(Buffer.from(key, 'hex'));
        have.delete(key);
        deleted++;
      }
    }
    this.compiled = compiled;
    return { written, deleted, durationMs: performance.now() - started };
  }

  private desired(compiled: CompiledState, endpoints: Endpoint[], hostAddresses: string[], nodeAddresses: string[]): Map<MapName, Contents> {
    const out = new Map<MapName, Contents>(UPSERT_ORDER.map((n) => [n, new Map()]));
    const put = (name: MapName, key: Buffer, value: Buffer) => out.get(name)!.set(key.toString('hex'), value.toString('hex'));

    for (const cidr of this.serviceCidrs) {
      const [address, len] = cidr.split('/') as [string, string];
      put('ipcache', encodeIpcacheKey({ family: address.includes(':') ? 6 : 4, address, prefixLength: Number(len) }), encodeIpcacheValue(Identity.SERVICE));
    }
    for (const e of compiled.ipcache) put('ipcache', encodeIpcacheKey(e), encodeIpcacheValue(e.identity));
    // Every node's addresses are remote nodes; this node's own are overwritten with the host identity just below.
    for (const ip of nodeAddresses) {
      put('ipcache', encodeIpcacheKey({ family: ip.includes(':') ? 6 : 4, address: ip, prefixLength: hostPrefixLength(ip) }), encodeIpcacheValue(Identity.REMOTE_NODE));
    }
    // This node's own addresses: traffic from them to local pods is always allowed.
    for (const ip of hostAddresses) {
      put('ipcache', encodeIpcacheKey({ family: ip.includes(':') ? 6 : 4, address: ip, prefixLength: hostPrefixLength(ip) }), encodeIpcacheValue(Identity.HOST));
    }
    const byId = new Map(compiled.endpoints.map((c) => [c.endpointId, c]));
    for (const ep of endpoints) {
      const c = byId.get(ep.id)!;
      const flags = (c.ingressIsolated ? EndpointFlag.INGRESS_ISOLATED : 0) | (c.egressIsolated ? EndpointFlag.EGRESS_ISOLATED : 0);
      const info: EndpointInfo = {
        ifindex: ep.hostIfindex,
        endpointId: ep.id,
        identity: c.identity,
        flags,
        mac: ep.mac,
        hostMac: ep.hostMac,
        ipv4: ep.ips.find((ip) => !ip.includes(':')) ?? null,
        ipv6: ep.ips.find((ip) => ip.includes(':')) ?? null,
      };
      const value = encodeEndpointInfo(info);
      put('devices', deviceKey(ep.hostIfindex), value);
      for (const ip of ep.ips) put('endpoints', encodeEndpointKey({ family: ip.includes(':') ? 6 : 4, address: ip }), value);
      const encoded = this.encodedEntries(c);
      for (const [k, v] of encoded.policy) out.get('policy')!.set(k, v);
      for (const [k, v] of encoded.cidr) out.get('cidr_policy')!.set(k, v);
    }
    return out;
  }

  private encodedEntries(c: CompiledEndpoint): { policy: [string, string][]; cidr: [string, string][] } {
    let hit = this.encoded.get(c);
    if (!hit) {
      const allow = encodePolicyValue().toString('hex');
      hit = {
        policy: c.entries.map((e) => [encodePolicyKey({ ...e, endpointId: c.endpointId }).toString('hex'), allow]),
        cidr: c.cidrEntries.map((e) => [
          encodeCidrPolicyKey({ ...e, endpointId: c.endpointId }).toString('hex'),
          encodeCidrPolicyValue(e.selector).toString('hex'),
        ]),
      };
      this.encoded.set(c, hit);
    }
    return hit;
  }
}


/**
 * The endpoint manager: the agent's record of every local pod interface,
 * persisted in SQLite, and its mirror in the datapath's endpoints and devices
 * maps. A registration returns only once the maps hold the endpoint.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { encodeEndpointInfo, encodeEndpointKey, type EndpointInfo } from '../datapath/abi.ts';
import type { BpfMap } from '../datapath/bpf-map.ts';
import { openStore } from '../ipam/store.ts';
import type { Endpoint, EndpointSpec } from './api-types.ts';

/** Identity of endpoints until the policy engine assigns label-set identities. */
const IDENTITY_UNASSIGNED = 0;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS endpoints (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  container_id TEXT NOT NULL,
  ifname TEXT NOT NULL,
  spec TEXT NOT NULL,
  identity INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (container_id, ifname)
);`;

/** The maps the endpoint manager writes. */
export interface EndpointMaps {
  endpoints: BpfMap;
  devices: BpfMap;
}

/** Encodes a host ifindex as the devices map key (host byte order __u32). */
export function deviceKey(ifindex: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(ifindex);
  return key;
}

/** Local endpoints: store plus maps. */
export class EndpointManager {
  private readonly db: DatabaseSync;
  private readonly maps: EndpointMaps;
  private readonly stmts: Record<string, StatementSync>;

  constructor(dbFile: string, maps: EndpointMaps) {
    this.db = openStore(dbFile);
    this.db.exec(SCHEMA);
    this.maps = maps;
    this.stmts = {
      upsert: this.db.prepare(
        `INSERT INTO endpoints (container_id, ifname, spec, identity, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (container_id, ifname) DO UPDATE SET spec = excluded.spec RETURNING id, identity, created_at`,
      ),
      get: this.db.prepare('SELECT * FROM endpoints WHERE container_id = ? AND ifname = ?'),
      delete: this.db.prepare('DELETE FROM endpoints WHERE container_id = ? AND ifname = ?'),
      list: this.db.prepare('SELECT * FROM endpoints ORDER BY id'),
    };
  }

  /** Records the endpoint and writes it to the maps; returns it with its id. */
  register(spec: EndpointSpec): Endpoint {
    const row = this.stmts.upsert!.get(spec.containerID, spec.ifname, JSON.stringify(spec), IDENTITY_UNASSIGNED, Date.now()) as {
      id: number;
      identity: number;
      created_at: number;
    };
    const endpoint: Endpoint = { ...spec, id: row.id, identity: row.identity, createdAt: row.created_at };
    this.writeMaps(endpoint);
    return endpoint;
  }

  /** Removes the endpoint from the maps and the store; returns it, or null when unknown. */
  unregister(containerID: string, ifname: string): Endpoint | null {
    const row = this.stmts.get!.get(containerID, ifname) as Record<string, unknown> | undefined;
    if (!row) return null;
    const endpoint = toEndpoint(row);
    this.removeFromMaps(endpoint);
    this.stmts.delete!.run(containerID, ifname);
    return endpoint;
  }

  /** Every local endpoint. */
  list(): Endpoint[] {
    return this.stmts.list!.all().map((row) => toEndpoint(row as Record<string, unknown>));
  }

  /**
   * Makes the maps match the store after a (re)start: writes every endpoint and
   * removes map entries of endpoints the store no longer has.
   */
  resync(): { written: number; removed: number } {
    const endpoints = this.list();
    const wantKeys = new Set<string>();
    const wantDevices = new Set<string>();
    for (const ep of endpoints) {
      this.writeMaps(ep);
      for (const ip of ep.ips) wantKeys.add(endpointKey(ip).toString('hex'));
      wantDevices.add(deviceKey(ep.hostIfindex).toString('hex'));
    }
    let removed = 0;
    for (const key of this.maps.endpoints.keys()) {
      if (!wantKeys.has(key.toString('hex'))) removed += Number(this.maps.endpoints.delete(key));
    }
    for (const key of this.maps.devices.keys()) {
      if (!wantDevices.has(key.toString('hex'))) removed += Number(this.maps.devices.delete(key));
    }
    return { written: endpoints.length, removed };
  }

  /** Closes the store. */
  close(): void {
    this.db.close();
  }

  private writeMaps(ep: Endpoint): void {
    const info = endpointInfo(ep);
    // devices first: from-pod must know the sender before others can reach it.
    this.maps.devices.update(deviceKey(ep.hostIfindex), info);
    for (const ip of ep.ips) this.maps.endpoints.update(endpointKey(ip), info);
  }

  private removeFromMaps(ep: Endpoint): void {
    for (const ip of ep.ips) this.maps.endpoints.delete(endpointKey(ip));
    this.maps.devices.delete(deviceKey(ep.hostIfindex));
  }
}

function endpointKey(ip: string): Buffer {
  return encodeEndpointKey({ family: ip.includes(':') ? 6 : 4, address: ip });
}

function endpointInfo(ep: Endpoint): Buffer {
  const info: EndpointInfo = {
    ifindex: ep.hostIfindex,
    endpointId: ep.id,
    identity: ep.identity,
    flags: 0,
    mac: ep.mac,
    hostMac: ep.hostMac,
    ipv4: ep.ips.find((ip) => !ip.includes(':')) ?? null,
    ipv6: ep.ips.find((ip) => ip.includes(':')) ?? null,
  };
  return encodeEndpointInfo(info);
}

function toEndpoint(row: Record<string, unknown>): Endpoint {
  const spec = JSON.parse(String(row.spec)) as EndpointSpec;
  return { ...spec, id: Number(row.id), identity: Number(row.identity), createdAt: Number(row.created_at) };
}

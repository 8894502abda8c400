/**
 * EndpointManager against a real SQLite store: a registration the datapath
 * cannot serve (its endpoint_info refused by a full map) fails, so the CNI
 * ADD fails with "try again", and leaves no row behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import type { EndpointSpec } from '../contract/api-types.ts';
import { AgentError } from '../contract/client.ts';
import { EndpointManager, EndpointNotServedError } from '../agent/endpoints.ts';
import { toCniError } from '../cni/agent-errors.ts';
import { CNI_ERR, type CniError } from '../cni/spec.ts';

const spec = (containerID: string, i: number): EndpointSpec => ({
  containerID,
  ifname: 'eth0',
  namespace: 'x',
  pod: `p${i}`,
  netns: `/var/run/netns/p${i}`,
  hostIfname: `lxc${i}`,
  hostIfindex: 100 + i,
  mac: `02:00:00:00:00:0${i}`,
  hostMac: `02:00:00:00:01:0${i}`,
  ips: [`10.0.0.${i}`],
});

describe('EndpointManager', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  /** A manager over a datapath that refuses the endpoints `unserved` picks. */
  const manager = (unserved: (id: number) => boolean) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-endpoints-'));
    dirs.push(dir);
    return new EndpointManager(path.join(dir, 'endpoints.db'), (eps) => ({ unserved: [...eps.map((e) => e.id), 99].filter(unserved) }));
  };

  it('a registration whose endpoint the datapath refused fails, and leaves no row', () => {
    const m = manager((id) => id >= 2); // room for one endpoint
    expect(m.register(spec('a', 1)).id).toBe(1);
    expect(() => m.register(spec('b', 2))).toThrow(EndpointNotServedError);
    expect(m.list().map((e) => e.containerID)).toEqual(['a']);
  });

  it('another endpoint the datapath cannot serve does not fail this one', () => {
    const m = manager((id) => id === 99);
    expect(m.register(spec('a', 1)).id).toBe(1);
    expect(m.list().map((e) => e.containerID)).toEqual(['a']);
  });
  it('opens a store written with the old identity column and keeps its endpoints', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-endpoints-'));
    dirs.push(dir);
    const file = path.join(dir, 'endpoints.db');
    const old = new DatabaseSync(file);
    old.exec(`CREATE TABLE endpoints (id INTEGER PRIMARY KEY AUTOINCREMENT, container_id TEXT NOT NULL, ifname TEXT NOT NULL,
      spec TEXT NOT NULL, identity INTEGER NOT NULL, created_at INTEGER NOT NULL, UNIQUE (container_id, ifname))`);
    old.prepare('INSERT INTO endpoints (container_id, ifname, spec, identity, created_at) VALUES (?, ?, ?, 0, ?)').run('c1', 'eth0', JSON.stringify(spec('c1', 1)), 1);
    old.close();
    const m = new EndpointManager(file, () => ({ unserved: [] }));
    m.register(spec('c2', 2));
    expect(m.list().map((e) => e.containerID).sort()).toEqual(['c1', 'c2']);
    m.close();
  });
});

describe('the CNI plugin on a refused registration', () => {
  it('reports code 11 (try again later), as for an exhausted pool, and code 5 for other agent errors', () => {
    const codeOf = (kind: string) => {
      try {
        toCniError('register the endpoint')(new AgentError(503, { error: 'refused', kind }));
      } catch (err: unknown) {
        return (err as CniError).code;
      }
      return null;
    };
    expect(codeOf('TryAgain')).toBe(CNI_ERR.TRY_AGAIN_LATER);
    expect(codeOf('PoolExhausted')).toBe(CNI_ERR.TRY_AGAIN_LATER);
    expect(codeOf('Internal')).toBe(CNI_ERR.IO);
  });

});

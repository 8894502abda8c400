/**
 * A damaged endpoint store (endpoints.db) or identity numbering store
 * (numbering.db) does not stop the agent, and costs the running pods
 * nothing. Pods run under a NetworkPolicy on a local cluster; the agent is
 * killed with SIGKILL and one store damaged as a torn write or a bad disk
 * leaves it (truncated to half, a page overwritten with random bytes, zero
 * length, garbage throughout, unreadable; numbering.db also simply lost). The restarted
 * agent moves the file aside (its log and `sluice status` name where),
 * rebuilds it from the pinned maps, and every pod keeps its endpoint id, its
 * identity number and its traffic, allowed and denied as before. A new
 * label set gets a number no pod ever had: a number handed to another label
 * set would let the policy entries keyed by it judge the wrong pods.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRequest } from '../contract/client.ts';
import type { Endpoint } from '../contract/api-types.ts';
import { TestCluster, must, SLUICE } from './support/local-cluster.ts';

const PAGE = 4096;
const PORT = 7000;

/** A local cluster with names of this test's own (st32-). */
class Cluster extends TestCluster {
  override readonly name = `st32${this.id}`;
  override readonly dir = `/tmp/st32-${this.id}`;
  override readonly stateDir = `/tmp/st32-${this.id}-state`;
  override readonly socket = `/run/sluice/st32-${this.id}.sock`;
  override readonly bpfDir = `/sys/fs/bpf/st32-${this.id}`;
  readonly agentLog = path.join(this.dir, 'agent.log');

  /** Checkpoints every store's WAL into its file (as the agent's own checkpoints do), then kills the agent with SIGKILL. */
  async killAgent(): Promise<void> {
    for (const name of ['endpoints.db', 'numbering.db']) {
      const db = new DatabaseSync(path.join(this.stateDir, name));
      try {
        db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
      } finally {
        db.close();
      }
    }
    const pid = this.config().agentPid;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 200; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`agent ${pid} survived SIGKILL`);
  }

  endpoints(): Promise<Endpoint[]> {
    return agentRequest<Endpoint[]>(this.socket, 'GET', '/v1/endpoints');
  }

  /** Each pod's endpoint id and identity, by "namespace/pod". */
  async numbers(): Promise<Record<string, { id: number; identity: number }>> {
    return Object.fromEntries((await this.endpoints()).map((e) => [`${e.namespace}/${e.pod}`, { id: e.id, identity: e.identity }]));
  }

  async reaches(from: string, to: string): Promise<boolean> {
    return (await this.local('probe', from, to, '--protocol', 'tcp', '--port', String(PORT), '--timeout-ms', '1500')).code === 0;
  }
}

/** The probes of the test, and what the policy says of each. */
const PROBES: [string, string, boolean][] = [
  ['s/client', 's/web', true],
  ['s/client2', 's/web2', true],
  ['s/other', 's/web', false],
  ['s/other', 's/web2', false],
  ['s/web', 's/client', true], // web is isolated for ingress only
  ['s/other', 's/client', true],
];

const POLICY = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: web-from-clients, namespace: s }
spec:
  podSelector: { matchLabels: { app: web } }
  policyTypes: [Ingress]
  ingress:
    - from: [ { podSelector: { matchLabels: { role: client } } } ]
`;

/** Damage as a torn write or a bad disk leaves a store; each returns what it did. */
const DAMAGES: Record<string, (file: string) => void> = {
  'truncated to half': (file) => fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2)),
  'a page of random bytes': (file) => {
    const fd = fs.openSync(file, 'r+');
    try {
      // Page 2 holds the table's rows (page 1 is the schema); random bytes there are a page SQLite cannot read.
      fs.writeSync(fd, randomBytes(PAGE), 0, PAGE, PAGE);
    } finally {
      fs.closeSync(fd);
    }
  },
  'zero length': (file) => fs.truncateSync(file, 0),
  'garbage throughout': (file) => fs.writeFileSync(file, randomBytes(Math.max(PAGE, fs.statSync(file).size))),
  // What a read of a bad sector gives too (SQLITE_IOERR_READ), which a test cannot make.
  'unreadable (a directory where the file was)': (file) => {
    fs.rmSync(file);
    fs.mkdirSync(file);
  },
};

async function damageAndRestart(cluster: Cluster, store: string, damage: (file: string) => void): Promise<void> {
  await cluster.killAgent();
  const file = path.join(cluster.stateDir, store);
  damage(file);
  for (const suffix of ['-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
  await cluster.up();
}

describe('a damaged endpoint or numbering store', () => {
  const cluster = new Cluster();
  let before: Record<string, { id: number; identity: number }> = {};
  const seen = new Set<number>();
  let created = 0;

  beforeAll(async () => {
    await cluster.up();
    for (const [pod, label] of [['s/web', 'app=web'], ['s/web2', 'app=web'], ['s/client', 'role=client'], ['s/client2', 'role=client'], ['s/other', 'role=other']] as const) {
      await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'create', pod, '--label', label]);
    }
    await cluster.apply(POLICY);
    before = await cluster.numbers();
    for (const n of Object.values(before)) seen.add(n.identity);
    expect(Object.keys(before).sort()).toEqual(['s/client', 's/client2', 's/other', 's/web', 's/web2']);
    expect(before['s/web']!.identity).toBe(before['s/web2']!.identity);
    for (const [from, to, allowed] of PROBES) expect(await cluster.reaches(from, to), `${from} -> ${to}`).toBe(allowed);
  }, 180_000);
  afterAll(() => cluster.teardown());

  /** What every restart must keep: ids, numbers, traffic; and a new label set gets a number never used. */
  async function checkKept(store: string, how: string): Promise<void> {
    const after = await cluster.numbers();
    for (const [pod, n] of Object.entries(before)) expect(after[pod], `${pod} after ${store} ${how}`).toEqual(n);
    for (const [from, to, allowed] of PROBES) expect(await cluster.reaches(from, to), `${from} -> ${to} after ${store} ${how}`).toBe(allowed);
    // A pod of a known label set gets that set's number; one of a new set a number no pod ever had.
    const fresh = `s/fresh${++created}`;
    await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'create', fresh, '--label', `role=fresh${created}`]);
    const now = await cluster.numbers();
    expect(seen.has(now[fresh]!.identity), `${fresh} got ${now[fresh]!.identity}, a number pods had (${[...seen].join(', ')})`).toBe(false);
    expect(now[fresh]!.id).toBeGreaterThan(Math.max(...Object.values(before).map((n) => n.id)));
    expect(await cluster.reaches(fresh, 's/web'), `${fresh} -> s/web`).toBe(false);
    seen.add(now[fresh]!.identity);
    await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'delete', fresh]);
    for (const [pod, n] of Object.entries(before)) expect((await cluster.numbers())[pod], `${pod} after ${fresh} came and went`).toEqual(n);
  }

  /** The log and `sluice status` name the file moved aside, which is there. */
  async function checkReported(store: string, label: string): Promise<void> {
    const log = fs.readFileSync(cluster.agentLog, 'utf8');
    const file = path.join(cluster.stateDir, store);
    const moves = [...log.matchAll(new RegExp(`${label} store (\\S+) is damaged \\(.*\\): moved aside to (\\S+);`, 'g'))];
    expect(moves.length, `agent log:\n${log}`).toBeGreaterThan(0);
    const [, named, aside] = moves.at(-1)!;
    expect(named).toBe(file);
    expect(path.basename(aside!)).toMatch(new RegExp(`^${store.replace('.', '\\.')}\\.damaged-\\d{4}-\\d\\d-\\d\\dT`));
    expect(fs.existsSync(aside!)).toBe(true);
    const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as { ready: boolean; rebuiltStores: { store: string; movedTo: string }[] };
    expect(status.rebuiltStores.map((r) => [r.store, r.movedTo])).toEqual([[store.replace('.db', ''), aside]]);
    expect(await must(SLUICE, ['status', '--socket', cluster.socket])).toContain(`REBUILT: ${file} was damaged`);
  }

  for (const [how, damage] of Object.entries(DAMAGES)) {
    it(`endpoints.db ${how}: moved aside and rebuilt; every pod keeps its id, its identity and its traffic`, async () => {
      await damageAndRestart(cluster, 'endpoints.db', damage);
      await checkKept('endpoints.db', how);
      await checkReported('endpoints.db', 'endpoint');
    }, 120_000);
  }

  for (const [how, damage] of Object.entries(DAMAGES)) {
    it(`numbering.db ${how}: moved aside and rebuilt; every label set keeps its number, a new one gets one never used`, async () => {
      await damageAndRestart(cluster, 'numbering.db', damage);
      await checkKept('numbering.db', how);
      await checkReported('numbering.db', 'identity numbering');
    }, 120_000);
  }

  it('numbering.db lost (removed): the numbers come back from the maps, none is handed to another label set', async () => {
    await damageAndRestart(cluster, 'numbering.db', (file) => fs.rmSync(file));
    await checkKept('numbering.db', 'removed');
  }, 120_000);

  it('both stores damaged at once: the same', async () => {
    await cluster.killAgent();
    for (const store of ['endpoints.db', 'numbering.db']) DAMAGES['garbage throughout']!(path.join(cluster.stateDir, store));
    await cluster.up();
    await checkKept('both stores', 'garbage throughout');
  }, 120_000);
});

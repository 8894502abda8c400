/**
 * A rollback meets stores a newer agent wrote (issue 33's downgrade in
 * place). One this agent may use (its writer says so) is used as it is; one
 * it may not is left untouched, and the agent neither exits nor crash-loops:
 * it serves the running pods from what the kernel holds, refuses new pods
 * with "try again" and a message that says what to do (also in
 * `sluice status`), until the agent is rolled forward again.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, must, sh, SLUICE } from './support/local-cluster.ts';

class Cluster extends TestCluster {
  override readonly name = `st32${this.id}`;
  override readonly dir = `/tmp/st32-${this.id}`;
  override readonly stateDir = `/tmp/st32-${this.id}-state`;
  override readonly socket = `/run/sluice/st32-${this.id}.sock`;
  override readonly bpfDir = `/sys/fs/bpf/st32-${this.id}`;

  async stopAgent(): Promise<void> {
    const pid = this.config().agentPid;
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 400; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`agent ${pid} did not stop`);
  }

  /** Marks a store as a newer agent's: version, and the oldest reader it names (null: none). */
  markNewer(store: string, version: number, oldestReader: number | null): void {
    const db = new DatabaseSync(path.join(this.stateDir, store));
    try {
      db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
      if (oldestReader === null) db.exec('DROP TABLE IF EXISTS sluice_schema_compat');
      else db.exec(`CREATE TABLE IF NOT EXISTS sluice_schema_compat (oldest_reader INTEGER NOT NULL); DELETE FROM sluice_schema_compat; INSERT INTO sluice_schema_compat VALUES (${oldestReader})`);
      db.exec(`PRAGMA user_version = ${version}`);
      db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } finally {
      db.close();
    }
  }

  version(store: string): number {
    const db = new DatabaseSync(path.join(this.stateDir, store), { readOnly: true });
    try {
      return Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
    } finally {
      db.close();
    }
  }

  async status(): Promise<{ ready: boolean; notReady: string[]; endpoints: number; datapath: { adopted: boolean }; counters: Record<string, { packets: number }> }> {
    // Not ready exits non-zero, with the document all the same.
    return JSON.parse((await sh(SLUICE, ['status', '--socket', this.socket, '-o', 'json'])).stdout);
  }
}

async function ping(netns: string, ip: string): Promise<boolean> {
  return (await sh('ip', ['netns', 'exec', netns, 'ping', '-c', '1', '-W', '2', ip])).code === 0;
}

describe('stores written by a newer agent (a rollback)', () => {
  const cluster = new Cluster();
  let pods: Awaited<ReturnType<Cluster['podAddresses']>>;
  let created = 0;

  beforeAll(async () => {
    await cluster.up();
    for (const pod of ['s/a', 's/b']) await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'create', pod]);
    pods = await cluster.podAddresses();
  }, 120_000);
  afterAll(() => cluster.teardown());

  async function podsStillTalk(): Promise<void> {
    expect(await ping(pods.netns['s/a']!, pods.ip['s/b']!), 's/a -> s/b').toBe(true);
    expect(await ping(pods.netns['s/b']!, pods.ip['s/a']!), 's/b -> s/a').toBe(true);
  }

  for (const store of ['ipam.db', 'endpoints.db', 'numbering.db']) {
    it(`${store} of a newer schema this agent may not use: left untouched, pods keep talking, new pods refused with what to do`, async () => {
      await cluster.stopAgent();
      const mine = cluster.version(store);
      cluster.markNewer(store, mine + 1, null);
      const bytes = fs.readFileSync(path.join(cluster.stateDir, store));
      await cluster.up();
      const status = await cluster.status();
      expect(status.ready).toBe(false);
      expect(status.notReady.join('\n')).toMatch(new RegExp(`store ${path.join(cluster.stateDir, store).replace(/[.]/g, '\\.')} was written by a newer Sluice agent .*Roll the agent forward`));
      expect(status.endpoints).toBe(2);
      await podsStillTalk();
      const refused = `s/new${++created}`;
      const r = await cluster.local('pod', 'create', refused);
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/written by a newer Sluice agent/);
      await cluster.local('pod', 'delete', refused);
      expect(fs.readFileSync(path.join(cluster.stateDir, store)).equals(bytes), `${store} untouched`).toBe(true);

      // Rolled forward (here: the newer agent's own mark says this one may use it): served again, the mark kept.
      await cluster.stopAgent();
      cluster.markNewer(store, mine + 1, mine);
      await cluster.up();
      expect((await cluster.status()).ready).toBe(true);
      await podsStillTalk();
      const name = `s/new${++created}`;
      await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'create', name]);
      const now = await cluster.podAddresses();
      expect(await ping(now.netns[name]!, pods.ip['s/a']!), `${name} -> s/a`).toBe(true);
      await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'delete', name]);
      expect(cluster.version(store)).toBe(mine + 1);
    }, 150_000);
  }
});

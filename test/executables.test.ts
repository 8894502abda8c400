/**
 * The single executables stand alone: copied outside the repository (no
 * node_modules anywhere near), `sluice local up` with no flags runs the agent
 * with every default, and the plugin works from the standard config fields.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, sh, SLUICE, SLUICE_CNI } from './support/local-cluster.ts';

const DEFAULT_SOCKET = '/run/sluice/sluice.sock';
const DEFAULT_CLUSTER_DIR = '/var/lib/sluice/local';

describe('the executables on their own', () => {
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bin-'));
  const sluice = path.join(bin, 'sluice');

  beforeAll(() => {
    if (fs.existsSync(DEFAULT_SOCKET) || fs.existsSync(DEFAULT_CLUSTER_DIR)) {
      throw new Error(`a Sluice agent or local cluster already uses the defaults (${DEFAULT_SOCKET}, ${DEFAULT_CLUSTER_DIR}): stop it before running this test`);
    }
    fs.copyFileSync(SLUICE, sluice);
    fs.copyFileSync(SLUICE_CNI, path.join(bin, 'sluice-cni'));
    fs.chmodSync(sluice, 0o755);
    fs.chmodSync(path.join(bin, 'sluice-cni'), 0o755);
  });
  afterAll(async () => {
    await sh(sluice, ['local', 'down']);
    fs.rmSync(bin, { recursive: true, force: true });
  });

  it('runs a local cluster with the defaults from a directory with no node_modules', async () => {
    await must(sluice, ['local', 'up']);
    const conflist = JSON.parse(fs.readFileSync(`${DEFAULT_CLUSTER_DIR}/cni/net.d/10-sluice.conflist`, 'utf8'));
    expect(conflist.plugins[0]).not.toHaveProperty('socket');
    expect(fs.statSync(DEFAULT_SOCKET).mode & 0o777).toBe(0o600);
    expect(fs.existsSync('/sys/fs/bpf/sluice/progs/from_pod')).toBe(true);

    await must(sluice, ['local', 'pod', 'create', 'solo/a']);
    await must(sluice, ['local', 'pod', 'create', 'solo/b']);
    const r = await sh(sluice, ['local', 'probe', 'solo/a', 'solo/b', '--protocol', 'tcp', '--port', '80']);
    expect(r.code, r.stderr).toBe(0);
    const log = fs.readFileSync(`${DEFAULT_CLUSTER_DIR}/cni.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log.map((l) => [l.verb, l.outcome])).toEqual([['ADD', 'ok'], ['ADD', 'ok']]);

    await must(sluice, ['local', 'down']);
    expect(fs.existsSync('/sys/fs/bpf/sluice')).toBe(false);
    expect(fs.existsSync(DEFAULT_SOCKET)).toBe(false);
    expect(fs.existsSync(DEFAULT_CLUSTER_DIR)).toBe(false);
  });
});

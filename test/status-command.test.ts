/**
 * `sluice status` is the DaemonSet's readiness probe: it must exit 1 while the
 * agent is not ready (datastore not listed, or the last sync of the maps
 * failed), say why, and exit 0 again once it is. --liveness (the liveness
 * probe) exits 0 whenever the agent answers. Against a stand-in agent on a
 * unix socket, and agentStatus() on a stand-in policy state.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { StatusResponse } from '../contract/api-types.ts';
import { agentStatus, type StatusContext } from '../agent/api/status-route.ts';
import { statusCommand } from '../cli/status.ts';

function context(syncError: string | null, listed = true): StatusContext {
  return {
    node: 'n1',
    pinDir: '/sys/fs/bpf/none',
    ipam: { pools: [], usage: () => [] },
    endpoints: { list: () => [] },
    datapath: { adopted: true },
    policy: {
      syncError,
      lastSync: null,
      lastSyncAtMs: 0,
      revision: 0,
      sync: { state: () => null },
    },
    datastore: { ready: () => listed, describe: () => 'stand-in', objects: () => ({ pods: [], namespaces: [], networkPolicies: [], nodes: [] }) },
  } as unknown as StatusContext;
}

describe('agent readiness', () => {
  it('is ready only with the datastore listed and the last sync applied, and says why not', async () => {
    expect(await agentStatus(context(null), false)).toMatchObject({ ready: true, notReady: [] });
    const failing = await agentStatus(context('map full'), false);
    expect(failing.ready).toBe(false);
    expect(failing.notReady).toEqual(['the last sync of the datapath maps failed: map full']);
    expect((await agentStatus(context(null, false), false)).notReady).toEqual(['the datastore has not listed every collection yet']);
  });
});

describe('sluice status exit code', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-status-'));
  const socket = path.join(dir, 'agent.sock');
  let status: StatusResponse;
  const server = http.createServer((req, res) => {
    const body = req.url?.startsWith('/v1/status') ? status : req.url === '/v1/counters' ? {} : [];
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body));
  });
  beforeAll(() => new Promise<void>((r) => server.listen(socket, r)));
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('exits 1 while not ready (text and JSON), 0 with --liveness, and 0 once ready', async () => {
    const print = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      status = { node: 'n1', ready: false, notReady: ['the last sync of the datapath maps failed: map full'], podCIDRs: [], endpoints: 0, datapath: { pinDir: '/x', adopted: true }, pools: [] };
      expect(await statusCommand(['--socket', socket])).toBe(1);
      expect(print.mock.calls.flat().join('\n')).toMatch(/NOT READY[\s\S]*map full/);
      expect(await statusCommand(['--socket', socket, '-o', 'json'])).toBe(1);
      expect(await statusCommand(['--socket', socket, '--liveness'])).toBe(0);
      status = { ...status, ready: true, notReady: [] };
      expect(await statusCommand(['--socket', socket])).toBe(0);
    } finally {
      print.mockRestore();
    }
  });
});

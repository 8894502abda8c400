/**
 * The CNI conformance suite (conformance/cni/): builds the Go driver against
 * libcni 1.1.2 (offline, GOPATH mode, Debian's packages) and runs it against
 * a dual-stack local cluster. The driver runs sluice-cni through libcni for
 * every verb and version libcni speaks, alone and chained with the reference
 * loopback and bandwidth plugins, then the spec-exact 1.1.0, STATUS and GC
 * invocations and the bad inputs; it prints "N passed, M failed".
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, SLUICE_CNI, sh } from './support/local-cluster.ts';
import { CniHarness } from './support/cni-harness.ts';
import { errorMessage } from '../lib/errors.ts';

const DRIVER_SRC = path.join(ROOT, 'conformance/cni/driver/main.go');
const REFERENCE_PLUGINS_DIR = '/usr/lib/cni';
const LIBCNI_GOPATH = '/usr/share/gocode';
const DRIVER_TIMEOUT_MS = 240_000;

describe('CNI conformance through libcni', () => {
  const h = new CniHarness(true);
  const work = `/tmp/sluice-cni-conformance-${h.cluster.id}`;
  const driver = path.join(work, 'driver');

  beforeAll(async () => {
    fs.mkdirSync(path.join(work, 'bin'), { recursive: true });
    // The runtime's CNI bin directory: sluice next to the reference plugins it is chained with.
    fs.symlinkSync(SLUICE_CNI, path.join(work, 'bin', 'sluice'));
    for (const p of ['loopback', 'bandwidth']) fs.symlinkSync(path.join(REFERENCE_PLUGINS_DIR, p), path.join(work, 'bin', p));
    try {
      execFileSync('go', ['build', '-o', driver, DRIVER_SRC], {
        cwd: path.dirname(DRIVER_SRC),
        env: { ...process.env, GOPATH: LIBCNI_GOPATH, GO111MODULE: 'off', GOFLAGS: '', GOCACHE: path.join(ROOT, 'dist/go-build-cache') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (err: unknown) {
      const stderr = String((err as { stderr?: unknown }).stderr ?? '');
      throw new Error(`build the libcni driver (needs golang-go and golang-github-appc-cni-dev: run tools/setup-debian.sh): ${errorMessage(err)} ${stderr}`);
    }
    await h.up();
  }, 120_000);
  afterAll(async () => {
    await h.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('passes every case of the suite and leaves nothing behind', async () => {
    const r = await sh(
      driver,
      [
        '-bin-dir', path.join(work, 'bin'),
        '-socket', h.cluster.socket,
        '-del-queue-dir', `${h.cluster.stateDir}/del-queue`,
        '-log-file', path.join(work, 'cni.log'),
        '-netns-prefix', `${h.cluster.name}-cf`,
        '-cache-dir', path.join(work, 'cache'),
      ],
      { timeoutMs: DRIVER_TIMEOUT_MS },
    );
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(r.stdout);
    expect(summary, `driver printed no summary: ${r.stdout}${r.stderr}`).not.toBeNull();
    console.log(`CNI conformance (libcni 1.1.2 driver): ${summary![0]}`);
    const failures = r.stdout.split('\n').filter((l) => l.startsWith('FAIL'));
    expect(failures).toEqual([]);
    expect(Number(summary![1])).toBeGreaterThanOrEqual(90);
    expect(r.code).toBe(0);

    expect(h.cluster.netnsLeft()).toEqual([]);
    expect(fs.readdirSync(`${h.cluster.bpfDir}/links`)).toEqual([]);
    expect(await h.agent<unknown[]>('/v1/endpoints')).toEqual([]);
    const ipam = await h.agent<{ allocations: unknown[] }>('/v1/ipam');
    expect(ipam.allocations).toEqual([]);
    // Every invocation left one log line.
    const lines = fs.readFileSync(path.join(work, 'cni.log'), 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(50);
    expect((await sh('tc', ['qdisc', 'show'])).stdout).not.toMatch(/dev lxc\S+ root refcnt \d+ tbf/);
  }, DRIVER_TIMEOUT_MS + 10_000);
});

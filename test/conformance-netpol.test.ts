/**
 * The NetworkPolicy conformance suite (conformance/netpol/), as `make
 * conformance` runs it: every fixed case and a short generative run against a
 * local cluster of its own, with real TCP and UDP traffic between the 9 model
 * pods. Passes when the suite prints "N passed, 0 failed" and leaves nothing
 * behind.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');
const SUITE = path.join(ROOT, 'conformance/netpol/main.ts');
const SUITE_TIMEOUT_MS = 300_000;

it('Sluice passes every NetworkPolicy conformance case and a generated run, leaving nothing behind', async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    // Denied probes wait out their timeout; 400 ms is ample between namespaces (allowed ones retry with 3 s).
    execFile(NODE, [SUITE, '--timeout-ms', '400'], { cwd: ROOT, timeout: SUITE_TIMEOUT_MS, maxBuffer: 64 << 20 }, (err, out, errOut) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: out, stderr: errOut });
    });
  });
  const summary = /^(\d+) passed, (\d+) failed$/m.exec(stdout);
  // The suite's own report (truth tables, policies, diagnosis) is what a person needs on a failure.
  if (!summary || Number(summary[2]) > 0 || code !== 0) console.log(stdout + stderr);
  expect(summary, 'the suite printed no summary').not.toBeNull();
  console.log(`NetworkPolicy conformance: ${summary![0]}`);
  expect(stdout.split('\n').filter((l) => l.startsWith('FAIL'))).toEqual([]);
  expect(Number(summary![1])).toBeGreaterThanOrEqual(70);
  expect(code).toBe(0);

  const cluster = /cluster (np[0-9a-f]{6})/.exec(stdout)?.[1];
  expect(cluster).toBeDefined();
  const netns = fs.existsSync('/var/run/netns') ? fs.readdirSync('/var/run/netns') : [];
  expect(netns.filter((n) => n.startsWith(`${cluster}-`))).toEqual([]);
  expect(fs.existsSync(`/sys/fs/bpf/sluice-netpol-${cluster!.slice(2)}`)).toBe(false);
}, SUITE_TIMEOUT_MS + 10_000);

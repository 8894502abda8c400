/**
 * The packet fuzzer's short run (conformance/fuzz/, issue 30), as
 * `make fuzz-datapath` runs its long one: a few thousand frames of every
 * header shape the parser knows, from every model pod under five random
 * policy sets (seed 1), on a dual-stack local cluster of its own (its VXLAN
 * phase, on two nodes, is test/fuzz-vxlan.test.ts). Passes when
 * no delivered frame is one the reference evaluator forbids (other than the
 * filed bugs of conformance/fuzz/known.ts), enough frames were delivered for
 * that to mean something, and nothing is left behind.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');
const FUZZER = path.join(ROOT, 'conformance/fuzz/main.ts');
const TIMEOUT_MS = 150_000;
const PACKETS = 3000;

it('fuzzed packets from every pod under random policies: no delivered frame the evaluator forbids', async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(NODE, [FUZZER, '--phase', 'single', '--packets', String(PACKETS), '--seed', '1'], { cwd: ROOT, timeout: TIMEOUT_MS, maxBuffer: 64 << 20 }, (err, out, errOut) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: out, stderr: errOut });
    });
  });
  const verdict = /^(\d+) disagreements$/m.exec(stdout);
  const figures = /^sent (\d+) frames, delivered (\d+), justified (\d+), in ([\d.]+) s/m.exec(stdout);
  // Every disagreement comes with its reproducer: that is what a person needs.
  if (!verdict || Number(verdict[1]) > 0 || code !== 0) console.log(stdout + stderr);
  else console.log(stdout.split('\n').filter((l) => /^(sent|fail closed|known issue|seed|cluster)/.test(l)).join('\n'));
  expect(verdict, 'the fuzzer printed no verdict').not.toBeNull();
  expect(stdout.split('\n').filter((l) => l.startsWith('DISAGREEMENT'))).toEqual([]);
  expect(Number(verdict![1])).toBe(0);
  expect(code).toBe(0);
  // A run in which nothing arrives cannot disagree: make sure this one meant something.
  const [sent, delivered, justified] = [Number(figures![1]), Number(figures![2]), Number(figures![3])];
  expect(sent).toBeGreaterThanOrEqual(PACKETS);
  expect(delivered).toBeGreaterThan(sent / 4);
  expect(justified).toBeGreaterThan(sent / 4);

  const cluster = /^cluster (fz[0-9a-f]{6})/m.exec(stdout)?.[1];
  expect(cluster).toBeDefined();
  const netns = fs.existsSync('/var/run/netns') ? fs.readdirSync('/var/run/netns') : [];
  expect(netns.filter((n) => n.startsWith(`${cluster}-`))).toEqual([]);
  expect(fs.existsSync(`/sys/fs/bpf/sluice-fuzz-${cluster!.slice(2)}`)).toBe(false);
  expect(fs.existsSync(`/tmp/sluice-fuzz-${cluster!.slice(2)}`)).toBe(false);
}, TIMEOUT_MS + 10_000);

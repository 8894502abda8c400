/**
 * The packet fuzzer's VXLAN phase, short run (conformance/fuzz/vxlan-*.ts,
 * issue 30: "VXLAN toward nodes"), as `make fuzz-datapath` runs its long one:
 * on a two-node VXLAN local cluster of its own, every model pod sends VXLAN
 * packets to port 4789 of its own node, the other node, their gateways and
 * (the contrast) other pods, under five random policy sets (seed 1), each
 * holding an inner packet with a forged source for a pod on the receiving
 * node. Passes when no inner packet arrives anywhere, no outer packet
 * arrives but an allowed one at its pod, enough arrived at pods for that to
 * mean something, and nothing is left behind.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');
const FUZZER = path.join(ROOT, 'conformance/fuzz/main.ts');
const TIMEOUT_MS = 120_000;
const FRAMES = 1500;

it('VXLAN packets from every pod to every node under random policies: no inner packet delivered, no outer one the evaluator forbids', async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(NODE, [FUZZER, '--phase', 'vxlan', '--vxlan-packets', String(FRAMES), '--vxlan-per-round', '300', '--seed', '1'], { cwd: ROOT, timeout: TIMEOUT_MS, maxBuffer: 64 << 20 }, (err, out, errOut) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: out, stderr: errOut });
    });
  });
  const verdict = /^(\d+) disagreements$/m.exec(stdout);
  const figures = /^vxlan: sent (\d+) packets \((\d+) to nodes and gateways, the rest to pods\) in (\d+) frames, outer delivered (\d+), justified (\d+), inner delivered (\d+)/m.exec(stdout);
  // Every disagreement comes with its reproducer: that is what a person needs.
  if (!verdict || Number(verdict[1]) > 0 || code !== 0) console.log(stdout + stderr);
  else console.log(stdout.split('\n').filter((l) => /^(vxlan|total)/.test(l)).join('\n'));
  expect(verdict, 'the fuzzer printed no verdict').not.toBeNull();
  expect(stdout.split('\n').filter((l) => l.startsWith('DISAGREEMENT'))).toEqual([]);
  expect(Number(verdict![1])).toBe(0);
  expect(code).toBe(0);
  const [packets, toNodes, frames, outerDelivered, justified, innerDelivered] = figures!.slice(1).map(Number) as [number, number, number, number, number, number];
  expect(frames).toBeGreaterThanOrEqual(FRAMES);
  expect(innerDelivered).toBe(0);
  // Most go to nodes; the contrast packets that policy allows arrive, so the pods' receivers see what comes.
  expect(toNodes).toBeGreaterThan(packets / 2);
  expect(outerDelivered).toBeGreaterThan(20);
  expect(justified).toBe(outerDelivered);

  const cluster = /^vxlan cluster (fzvx[0-9a-f]{6})/m.exec(stdout)?.[1];
  expect(cluster).toBeDefined();
  const id = cluster!.slice(4);
  const netns = fs.existsSync('/var/run/netns') ? fs.readdirSync('/var/run/netns') : [];
  expect(netns.filter((n) => n.startsWith(`${cluster}-`))).toEqual([]);
  expect(fs.existsSync(`/sys/fs/bpf/sluice-fzvx-${id}`)).toBe(false);
  expect(fs.existsSync(`/tmp/sluice-fzvx-${id}`)).toBe(false);
  expect(fs.readdirSync('/run/sluice').filter((f) => f.startsWith(`fzvx-${id}`))).toEqual([]);
}, TIMEOUT_MS + 10_000);

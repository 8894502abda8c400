/**
 * `sluice install-cni` during a rolling update: kubelet may execute the plugin
 * and the runtime read the conflist while a new install-cni replaces them.
 * Readers and executors in a loop never see part of a file; a writer killed
 * between write and rename leaves the old file and, after the next run, no
 * temp file; a failed write leaves nothing behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CRASH_ENV } from '../install/atomic-file.ts';
import { installCniCommand } from '../install/install-cni.ts';

const REPO = path.join(import.meta.dirname, '..');

/** A shell script of about `size` bytes that prints `word`; any prefix of it fails (an unterminated quote) or prints nothing. */
function script(word: string, size: number): Buffer {
  return Buffer.from(`#!/bin/sh\n: '${word.toLowerCase().repeat(size)}'\necho ${word}\n`);
}

/**
 * Reads and executes `target` in a loop until the stop file appears; prints what
 * it saw that was neither A nor B. A process of its own, as kubelet is: a child
 * forked in the writer's process would inherit the temp file's write descriptor
 * until its exec, and executing the renamed file then fails with ETXTBSY.
 */
const READER = `
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const [target, a, b, stop] = process.argv.slice(1);
const A = fs.readFileSync(a), B = fs.readFileSync(b);
let reads = 0, execs = 0;
const bad = [];
while (!fs.existsSync(stop)) {
  const got = fs.readFileSync(target);
  reads++;
  if (!got.equals(A) && !got.equals(B)) bad.push('read ' + got.length + ' bytes');
  if (reads % 5 === 0) {
    try {
      const out = execFileSync(target, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      execs++;
      if (out !== 'A\\n' && out !== 'B\\n') bad.push('exec printed ' + JSON.stringify(out.slice(0, 40)));
    } catch (err) {
      bad.push('exec failed: ' + String(err.message).slice(0, 200));
    }
  }
}
process.stdout.write(JSON.stringify({ reads, execs, bad: bad.slice(0, 10), badCount: bad.length }));
`;

let dir: string;
let binDir: string;
let srcA: string;
let srcB: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-install-cni-atomic-'));
  binDir = path.join(dir, 'bin');
  srcA = path.join(dir, 'sluice-cni-a');
  srcB = path.join(dir, 'sluice-cni-b');
  fs.writeFileSync(srcA, script('A', 4 << 20), { mode: 0o755 });
  fs.writeFileSync(srcB, script('B', (4 << 20) + 4096), { mode: 0o755 });
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const install = (source: string, ...more: string[]) => installCniCommand(['--source', source, '--bin-dir', binDir, ...more]);

/** Runs install-cni in a child process with the crash knob set; returns how it ended. */
function installAndCrash(source: string, ...more: string[]): NodeJS.Signals | null {
  const code = `import('./install/install-cni.ts').then((m) => m.installCniCommand(${JSON.stringify(['--source', source, '--bin-dir', binDir, ...more])})).then((c) => process.exit(c));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd: REPO, env: { ...process.env, [CRASH_ENV]: 'before-rename' }, encoding: 'utf8' });
  return r.signal;
}

const temps = (d: string) => fs.readdirSync(d).filter((n) => n.startsWith('.'));

describe('install-cni replaces files atomically', () => {
  it('a reader reading and executing the plugin in a loop while install-cni runs again and again sees only whole files', async () => {
    expect(await install(srcA)).toBe(0);
    const target = path.join(binDir, 'sluice');
    const stop = path.join(dir, 'stop');
    const reader = spawn(process.execPath, ['-e', READER, target, srcA, srcB, stop], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    reader.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const report = new Promise<{ reads: number; execs: number; bad: string[]; badCount: number }>((resolve, reject) => {
      reader.once('close', () => resolve(JSON.parse(out)));
      reader.once('error', reject);
    });
    let installs = 0;
    const until = Date.now() + 4000;
    while (Date.now() < until) {
      expect(await install(installs % 2 === 0 ? srcB : srcA)).toBe(0);
      installs++;
      await new Promise((r) => setImmediate(r));
    }
    fs.writeFileSync(stop, '');
    const seen = await report;
    console.log(`install-cni: ${installs} installs of 4 MiB, ${seen.reads} reads, ${seen.execs} executions, ${seen.badCount} partial`);
    expect(seen.bad).toEqual([]);
    expect(installs).toBeGreaterThan(10);
    expect(seen.execs).toBeGreaterThan(5);
    expect(temps(binDir)).toEqual([]);
    expect(fs.statSync(target).mode & 0o7777).toBe(0o755);
  }, 30_000);

  it('a writer killed between write and rename leaves the old plugin intact, and the next run leaves no temp file', async () => {
    expect(await install(srcA)).toBe(0);
    const target = path.join(binDir, 'sluice');
    expect(installAndCrash(srcB)).toBe('SIGKILL');
    expect(fs.readFileSync(target).equals(fs.readFileSync(srcA))).toBe(true);
    expect(temps(binDir)).toHaveLength(1); // the crash happened where it should
    expect(await install(srcB)).toBe(0);
    expect(fs.readFileSync(target).equals(fs.readFileSync(srcB))).toBe(true);
    expect(temps(binDir)).toEqual([]);
    expect(fs.statSync(target).mode & 0o7777).toBe(0o755);
  }, 30_000);

  it('a writer killed between write and rename of the conflist leaves the old conflist, and the next run leaves no temp file', async () => {
    const confDir = path.join(dir, 'net.d');
    const conf = path.join(confDir, '10-sluice.conflist');
    const template = path.join(dir, 'template.conflist');
    expect(await install(srcA, '--conf', conf)).toBe(0);
    const old = fs.readFileSync(conf, 'utf8');
    fs.writeFileSync(template, JSON.stringify({ cniVersion: '1.0.0', name: 'sluice', plugins: [{ type: 'sluice' }, { type: 'portmap' }] }));
    // The plugin is unchanged, so the conflist is the file being written when the writer dies.
    expect(installAndCrash(srcA, '--conf', conf, '--conf-template', template)).toBe('SIGKILL');
    expect(fs.readFileSync(conf, 'utf8')).toBe(old);
    expect(temps(confDir)).toHaveLength(1);
    expect(await install(srcA, '--conf', conf, '--conf-template', template)).toBe(0);
    expect(JSON.parse(fs.readFileSync(conf, 'utf8')).plugins).toHaveLength(2);
    expect(temps(confDir)).toEqual([]);
    expect(fs.statSync(conf).mode & 0o7777).toBe(0o644);
  }, 30_000);

  it('a write that fails leaves no temp file', async () => {
    fs.mkdirSync(path.join(binDir, 'sluice'), { recursive: true }); // rename over a directory fails
    await expect(install(srcA)).rejects.toThrow();
    expect(temps(binDir)).toEqual([]);
  });
});

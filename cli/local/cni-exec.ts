/**
 * Runs a CNI plugin the way a container runtime does: the conflist's plugin
 * entry (plus cniVersion and name) on stdin, CNI_* in the environment, the
 * plugin looked up by `type` in the CNI bin directory.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** One CNI invocation. */
export interface CniInvocation {
  command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';
  containerID: string;
  netns: string;
  ifname: string;
  args: Record<string, string>;
}

/** A plugin that exited non-zero: carries the CNI error object it printed. */
export class CniExecError extends Error {
  readonly code: number;
  constructor(plugin: string, verb: string, result: { code?: number; msg?: string; details?: string }) {
    super(`CNI ${verb} by ${plugin} failed (code ${result.code ?? '?'}): ${result.msg ?? 'no message'}${result.details ? ` (${result.details})` : ''}`);
    this.code = result.code ?? 0;
  }
}

/**
 * Runs every plugin of the conflist in order (ADD) or in reverse (DEL); returns the last result.
 * `runner` prefixes each plugin's command line, e.g. nsenter into the node's network namespace.
 */
export async function execConflist(conflistFile: string, binDir: string, inv: CniInvocation, runner: string[] = []): Promise<unknown> {
  const conflist = JSON.parse(fs.readFileSync(conflistFile, 'utf8')) as {
    cniVersion: string;
    name: string;
    plugins: Record<string, unknown>[];
  };
  const plugins = inv.command === 'DEL' ? [...conflist.plugins].reverse() : conflist.plugins;
  let prevResult: unknown;
  for (const plugin of plugins) {
    const conf = { cniVersion: conflist.cniVersion, name: conflist.name, ...plugin, ...(prevResult ? { prevResult } : {}) };
    const result = await execPlugin(path.join(binDir, String(plugin.type)), binDir, conf, inv, runner);
    if (inv.command === 'ADD') prevResult = result;
  }
  return prevResult;
}

function execPlugin(bin: string, binDir: string, conf: unknown, inv: CniInvocation, runner: string[]): Promise<unknown> {
  const env = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: inv.command,
    CNI_CONTAINERID: inv.containerID,
    CNI_NETNS: inv.netns,
    CNI_IFNAME: inv.ifname,
    CNI_PATH: binDir,
    CNI_ARGS: Object.entries(inv.args)
      .map(([k, v]) => `${k}=${v}`)
      .join(';'),
  };
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = [...runner, bin];
    const child = spawn(cmd!, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const text = Buffer.concat(out).toString('utf8').trim();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        reject(new Error(`${bin} printed something that is not JSON: ${text.slice(0, 200)} ${Buffer.concat(err).toString('utf8')}`));
        return;
      }
      if (code === 0) resolve(parsed);
      else reject(new CniExecError(path.basename(bin), inv.command, (parsed ?? {}) as { code?: number; msg?: string }));
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

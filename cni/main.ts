/**
 * sluice-cni: the CNI plugin executable. Reads the CNI_* environment and the
 * network configuration on stdin, runs one verb, prints its result (or a CNI
 * error object) on stdout, and exits non-zero on error. Nothing else is ever
 * written to stdout.
 */
import fs from 'node:fs';
import { parseEnv, parseNetConf, checkVerbAllowed } from './config.ts';
import { formatResult, versionResult } from './result.ts';
import { CniError, CNI_ERR, CURRENT_VERSION, type NetConf } from './spec.ts';
import type { CniEnv } from './config.ts';

/** Reads the version a config asks for, for errors raised before the config is fully parsed. */
function requestedVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === 'string' && v !== '' ? v : CURRENT_VERSION;
  } catch {
    return CURRENT_VERSION;
  }
}

const CNI_ERR_NOT_IMPLEMENTED = 100;

async function run(env: CniEnv, conf: NetConf): Promise<unknown> {
  switch (env.command) {
    case 'ADD': {
      const { isNetnsPath } = await import('../datapath/netns.ts');
      if (!isNetnsPath(env.netns)) {
        throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS '${env.netns}' is not a network namespace: the runtime must pass the pod sandbox's netns path`);
      }
      const { cmdAdd } = await import('./add.ts');
      return formatResult(await cmdAdd(env, conf), conf.cniVersion);
    }
    case 'DEL': {
      const { cmdDel } = await import('./del.ts');
      await cmdDel(env, conf);
      return undefined;
    }
    case 'STATUS': {
      const { cmdStatus } = await import('./status.ts');
      await cmdStatus(conf);
      return undefined;
    }
    case 'CHECK':
    case 'GC':
      // Codes 100 and up are plugin-specific; the spec has none for "not implemented".
      throw new CniError(CNI_ERR_NOT_IMPLEMENTED, `${env.command} is not implemented by this version of sluice-cni yet`);
    case 'VERSION':
      return versionResult(conf.cniVersion);
  }
}

/** Appends one line per invocation to the config's log file; logging never fails the verb. */
function logInvocation(conf: NetConf | undefined, started: number, outcome: string): void {
  if (!conf?.logFile) return;
  // JSON, so whatever a runtime put in CNI_* cannot forge a line.
  const line = JSON.stringify({
    time: new Date().toISOString(),
    verb: process.env.CNI_COMMAND ?? '',
    containerID: process.env.CNI_CONTAINERID ?? '',
    ifname: process.env.CNI_IFNAME ?? '',
    ms: Number((performance.now() - started).toFixed(1)),
    outcome,
  }) + '\n';
  try {
    fs.appendFileSync(conf.logFile, line);
  } catch {
    // The log is for people; the runtime only reads stdout.
  }
}

async function main(): Promise<number> {
  const started = performance.now();
  let stdin = '';
  let version: string = CURRENT_VERSION;
  let conf: NetConf | undefined;
  try {
    stdin = fs.readFileSync(0, 'utf8');
    version = requestedVersion(stdin);
    const env = parseEnv(process.env);
    if (env.command === 'VERSION') {
      process.stdout.write(JSON.stringify(versionResult(version)) + '\n');
      return 0;
    }
    conf = parseNetConf(stdin);
    checkVerbAllowed(env.command, conf.cniVersion);
    const result = await run(env, conf);
    if (result !== undefined) process.stdout.write(JSON.stringify(result) + '\n');
    logInvocation(conf, started, 'ok');
    return 0;
  } catch (err: unknown) {
    const cniErr = err instanceof CniError ? err : new CniError(CNI_ERR.IO, err instanceof Error ? err.message : String(err));
    process.stdout.write(JSON.stringify(cniErr.toJSON(version)) + '\n');
    logInvocation(conf, started, `error ${cniErr.code}: ${cniErr.message}`);
    return 1;
  }
}

main().then((code) => process.exit(code));

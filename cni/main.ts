/**
 * sluice-cni: the CNI plugin executable. Reads the CNI_* environment and the
 * network configuration on stdin, runs one verb, prints its result (or a CNI
 * error object) on stdout, and exits non-zero on error. Nothing else is ever
 * written to stdout.
 */
import fs from 'node:fs';
import { parseEnv, parseNetConf, checkVerbAllowed } from './config.ts';
import { formatResult, versionResult } from './result.ts';
import { CniError, CNI_ERR, CURRENT_VERSION, type CniVerb, type NetConf } from './spec.ts';
import type { CniEnv } from './config.ts';
import { errorMessage } from '../lib/errors.ts';

/** Reads the version a config asks for, for errors raised before the config is fully parsed. */
function requestedVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === 'string' && v !== '' ? v : CURRENT_VERSION;
  } catch {
    return CURRENT_VERSION;
  }
}

/** What a verb printed (undefined: nothing) and what the log line should add. */
interface Outcome {
  result?: unknown;
  note?: string;
}

/** The verbs that act on a parsed configuration; VERSION is answered before one is read. */
type ConfVerb = Exclude<CniVerb, 'VERSION'>;

async function run(command: ConfVerb, env: CniEnv, conf: NetConf): Promise<Outcome> {
  switch (command) {
    case 'ADD': {
      // ADD checks CNI_NETNS itself, while the agent allocates the pod's addresses.
      const { cmdAdd } = await import('./add.ts');
      return { result: formatResult(await cmdAdd(env, conf), conf.cniVersion) };
    }
    case 'DEL': {
      const { cmdDel } = await import('./del.ts');
      try {
        const note = await cmdDel(env, conf);
        return note === undefined ? {} : { note };
      } catch (err: unknown) {
        // Kubelet retries DEL until it succeeds: report every failure as one a retry may fix.
        if (err instanceof CniError) throw err;
        throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `DEL ${env.containerId}/${env.ifname}: ${errorMessage(err)}`);
      }
    }
    case 'CHECK': {
      const { requirePodNetns } = await import('./pod-netns.ts');
      await requirePodNetns(env);
      const { cmdCheck } = await import('./check.ts');
      await cmdCheck(env, conf);
      return {};
    }
    case 'STATUS': {
      const { cmdStatus } = await import('./status.ts');
      await cmdStatus(conf);
      return {};
    }
    case 'GC': {
      const { cmdGc } = await import('./gc.ts');
      return { note: await cmdGc(conf) };
    }
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
    const command = env.command;
    if (command === 'VERSION') {
      process.stdout.write(JSON.stringify(versionResult(version)) + '\n');
      return 0;
    }
    conf = parseNetConf(stdin);
    checkVerbAllowed(command, conf.cniVersion);
    const { result, note } = await run(command, env, conf);
    if (result !== undefined) process.stdout.write(JSON.stringify(result) + '\n');
    logInvocation(conf, started, note === undefined ? 'ok' : `ok: ${note}`);
    return 0;
  } catch (err: unknown) {
    const cniErr = err instanceof CniError ? err : new CniError(CNI_ERR.IO, errorMessage(err));
    process.stdout.write(JSON.stringify(cniErr.toJSON(version)) + '\n');
    logInvocation(conf, started, `error ${cniErr.code}: ${cniErr.message}`);
    return 1;
  }
}

main().then((code) => process.exit(code));

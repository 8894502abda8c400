/**
 * Undo actions for everything a benchmark creates (netns, links, processes,
 * clusters, files): run in reverse order on normal exit, on failure, and on
 * SIGINT/SIGTERM, so nothing is left behind whatever happens. Every action is
 * synchronous (process 'exit' handlers cannot wait).
 */
import { spawnSync } from 'node:child_process';
import { errorMessage } from '../lib/errors.ts';

const actions: { what: string; fn: () => void }[] = [];
let installed = false;

function runAll(): void {
  while (actions.length > 0) {
    const { what, fn } = actions.pop()!;
    try {
      fn();
    } catch (err: unknown) {
      console.error(`cleanup: ${what}: ${errorMessage(err)}`);
    }
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      console.error(`${signal}: cleaning up`);
      runAll();
      process.exit(130);
    });
  }
}

/** Registers an undo action; returns a function that runs it now (and only once). */
export function onCleanup(what: string, fn: () => void): () => void {
  install();
  const entry = { what, fn };
  actions.push(entry);
  return () => {
    const i = actions.indexOf(entry);
    if (i < 0) return;
    actions.splice(i, 1);
    fn();
  };
}

/** Runs every registered undo action now, newest first. */
export function cleanupNow(): void {
  runAll();
}

/** Runs a command synchronously; throws with its output when it exits non-zero. */
export function sh(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 8).join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`.slice(0, 2000));
  return r.stdout;
}

/** Runs a command synchronously and ignores its outcome (for undo actions). */
export function shQuiet(cmd: string, args: string[]): void {
  spawnSync(cmd, args, { stdio: 'ignore' });
}

/** Creates a named network namespace (lo up) that is deleted at cleanup. */
export function addNetns(name: string): void {
  sh('ip', ['netns', 'add', name]);
  onCleanup(`netns ${name}`, () => shQuiet('ip', ['netns', 'del', name]));
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

/** Kills a process we started, by its PID, if it still runs. */
export function killPid(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

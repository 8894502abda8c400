/**
 * The eBPF object as the Makefile builds it, for tests that need a fresh one:
 * its own rule and flags (`make BPF_OBJ=<path> <path>`), into a directory of
 * this run's own that is removed afterwards. dist/sluice.bpf.o, which the
 * executables embed, is left alone, and the flags live in the Makefile only.
 *
 * A build is kept for later calls with the same inputs (the object's rule,
 * extra flags, the Makefile, every file of bpf/, the compiler and the system's
 * BPF headers): the kernel files built the plain object and a few variants
 * over and over, 1.5 s of clang each.
 */
import { createHash, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const REPO_ROOT = join(import.meta.dirname, '..', '..');
/** Built objects by their inputs' hash, shared by the test files of a run (and the next, while bpf/ is unchanged). */
const CACHE_DIR = join(tmpdir(), 'sluice-test-bpf-cache');
/** Objects kept at most (the newest); older ones are removed when a new one is added. */
const CACHE_ENTRIES_MAX = 24;
/** What the compile reads besides bpf/ and the Makefile: the system's BPF and kernel headers. */
const SYSTEM_INCLUDE_DIRS = ['/usr/include/bpf', '/usr/include/linux'];

/** Which of the Makefile's objects: its variable and file name. */
export interface MakefileObject {
  variable: string;
  file: string;
}

/** The datapath (bpf/datapath.c). */
export const DATAPATH_OBJECT: MakefileObject = { variable: 'BPF_OBJ', file: 'sluice.bpf.o' };
/** The tracing object (bpf/trace.c). */
export const TRACE_OBJECT: MakefileObject = { variable: 'TRACE_OBJ', file: 'sluice-trace.bpf.o' };

/** The socket load balancer (bpf/service-lb.c). */
export const SERVICE_LB_OBJECT: MakefileObject = { variable: 'SERVICE_LB_OBJ', file: 'sluice-service-lb.bpf.o' };

/** The compiler `make` runs: its resolved path, size and modification time. */
function compilerIdentity(): string {
  const clang = process.env.CLANG ?? 'clang';
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = join(dir, clang);
    if (!fs.existsSync(candidate)) continue;
    const real = fs.realpathSync(candidate);
    const st = fs.statSync(real);
    return `${real} ${st.size} ${st.mtimeMs}`;
  }
  return clang;
}

/** A hash of everything the build reads. */
function inputsKey(which: MakefileObject, extraCflags: string): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify([which, extraCflags, process.env.BPF_CFLAGS ?? '', compilerIdentity()]));
  hash.update(fs.readFileSync(join(REPO_ROOT, 'Makefile')));
  const bpf = join(REPO_ROOT, 'bpf');
  for (const name of fs.readdirSync(bpf).sort()) {
    hash.update(`\0${name}\0`);
    hash.update(fs.readFileSync(join(bpf, name)));
  }
  for (const dir of SYSTEM_INCLUDE_DIRS) {
    if (!fs.existsSync(dir)) continue;
    for (const name of fs.readdirSync(dir).sort()) hash.update(`${dir}/${name} ${fs.statSync(join(dir, name)).mtimeMs}\n`);
  }
  return hash.digest('hex');
}

/** Removes all but the newest CACHE_ENTRIES_MAX objects. */
function pruneCache(): void {
  const entries = fs
    .readdirSync(CACHE_DIR)
    .filter((n) => n.endsWith('.o'))
    .map((n) => ({ path: join(CACHE_DIR, n), mtime: fs.statSync(join(CACHE_DIR, n)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  for (const e of entries.slice(CACHE_ENTRIES_MAX)) fs.rmSync(e.path, { force: true });
}

/** Runs the Makefile's rule for the object into `object`. */
function make(which: MakefileObject, object: string, extraCflags: string): void {
  // Under `make -j test` the jobserver's descriptors are not this process's to pass on.
  const makeflags = (process.env.MAKEFLAGS ?? '').replace(/\s*--jobserver-(auth|fds)=\S+/g, '');
  execFileSync('make', ['-s', '-C', REPO_ROOT, `${which.variable}=${object}`, ...(extraCflags ? [`BPF_EXTRA_CFLAGS=${extraCflags}`] : []), object], {
    env: { ...process.env, MAKEFLAGS: makeflags },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** Builds the object into a private directory (or copies the build kept for the same inputs), hands its path to use, and removes the directory. */
export function withMakefileBuild<T>(use: (objectPath: string) => T, which: MakefileObject = DATAPATH_OBJECT, extraCflags = ''): T {
  const dir = join(tmpdir(), `sluice-bpf-${randomUUID()}`);
  fs.mkdirSync(dir, { mode: 0o700 }); // not recursive: fails rather than share an existing directory
  try {
    const object = join(dir, which.file);
    fs.mkdirSync(CACHE_DIR, { recursive: true, mode: 0o700 });
    const kept = join(CACHE_DIR, `${inputsKey(which, extraCflags)}.o`);
    if (fs.existsSync(kept)) {
      fs.copyFileSync(kept, object);
    } else {
      make(which, object, extraCflags);
      // Whole or not at all: another test file may be reading the cache meanwhile.
      const partial = `${kept}.${randomUUID()}.tmp`;
      fs.copyFileSync(object, partial);
      fs.renameSync(partial, kept);
      pruneCache();
    }
    return use(object);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The eBPF object as the Makefile builds it, for tests that need a fresh one:
 * its own rule and flags (`make BPF_OBJ=<path> <path>`), into a directory of
 * this run's own that is removed afterwards. dist/sluice.bpf.o, which the
 * executables embed, is left alone, and the flags live in the Makefile only.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const REPO_ROOT = join(import.meta.dirname, '..', '..');

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

/** Builds the object into a private directory, hands its path to use, and removes the directory. */
export function withMakefileBuild<T>(use: (objectPath: string) => T, which: MakefileObject = DATAPATH_OBJECT, extraCflags = ''): T {
  const dir = join(tmpdir(), `sluice-bpf-${randomUUID()}`);
  mkdirSync(dir, { mode: 0o700 }); // not recursive: fails rather than share an existing directory
  try {
    const object = join(dir, which.file);
    // Under `make -j test` the jobserver's descriptors are not this process's to pass on.
    const makeflags = (process.env.MAKEFLAGS ?? '').replace(/\s*--jobserver-(auth|fds)=\S+/g, '');
    execFileSync('make', ['-s', '-C', REPO_ROOT, `${which.variable}=${object}`, ...(extraCflags ? [`BPF_EXTRA_CFLAGS=${extraCflags}`] : []), object], {
      env: { ...process.env, MAKEFLAGS: makeflags },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    return use(object);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

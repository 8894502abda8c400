// Network namespaces: validate a netns path, open it, and run a synchronous function inside it.
//
// setns(2) with CLONE_NEWNET switches only the calling thread, so Node's main thread can enter a pod's
// namespace, create sockets there, and come straight back: a socket stays bound to the namespace it was
// created in. Nothing asynchronous may run while we are inside (the callback is synchronous), and the
// libuv thread pool never moves. open/close/statfs come from node:fs; only setns needs FFI (koffi, imported
// statically so the single executable bundles it; the libc binding itself is made on first use).
import { closeSync, fstatSync, openSync, statSync, statfsSync } from 'node:fs';
import koffi from 'koffi';
import { getSystemErrorName } from 'node:util';

/** statfs f_type of nsfs, where namespace files (and their bind mounts) live (NSFS_MAGIC). */
export const NSFS_MAGIC = 0x6e736673;
/** statfs f_type of procfs (PROC_SUPER_MAGIC): what older kernels report for /proc/<pid>/ns/net. */
export const PROC_SUPER_MAGIC = 0x9fa0;
/** setns(2) nstype for network namespaces. */
export const CLONE_NEWNET = 0x40000000;
/** The calling thread's own network namespace file. */
export const THREAD_NETNS_PATH = '/proc/thread-self/ns/net';

const PROC_NETNS_PATH_RE = /^\/proc\/(?:self|thread-self|\d+(?:\/task\/\d+)?)\/ns\/net$/;

/** An open network namespace file; `close()` is idempotent. */
export interface NetnsHandle {
  /** The open file descriptor (O_RDONLY|O_CLOEXEC). */
  readonly fd: number;
  /** The path it was opened from (for messages). */
  readonly path: string;
  /** Closes the descriptor. */
  close(): void;
}

/** An error from entering or leaving a namespace, with the errno name in `.code`. */
export class NetnsError extends Error {
  code: string;
  errno: number;
  constructor(message: string, code: string, errno: number) {
    super(message);
    this.name = 'NetnsError';
    this.code = code;
    this.errno = errno;
  }
}

/** ioctl on a namespace file: which kind of namespace it is (_IO(0xb7, 0x3), Linux 4.11+). */
export const NS_GET_NSTYPE = 0xb703;

/**
 * Returns true when `path` is a NETWORK namespace: a file on nsfs (/proc/<pid>/ns/net, or a bind mount of
 * one such as /var/run/netns/<name>; /proc/<pid>/ns/net may report procfs on older kernels) that the
 * kernel, asked with ioctl(NS_GET_NSTYPE), says is of type CLONE_NEWNET. A mount, pid or user namespace
 * file is refused, as is anything else. Never throws.
 */
export function isNetnsPath(path: string): boolean {
  let type: number;
  try {
    type = Number(statfsSync(path).type);
  } catch {
    return false;
  }
  if (type !== NSFS_MAGIC && !(type === PROC_SUPER_MAGIC && PROC_NETNS_PATH_RE.test(path))) return false;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    return loadLibc().ioctl(fd, NS_GET_NSTYPE) === CLONE_NEWNET;
  } finally {
    closeSync(fd);
  }
}

/** True when `path` is the network namespace this process runs in (the host's, for the CNI plugin). Never throws. */
export function isOwnNetns(path: string): boolean {
  try {
    const target = statSync(path);
    const own = statSync(THREAD_NETNS_PATH);
    return target.dev === own.dev && target.ino === own.ino;
  } catch {
    return false;
  }
}

/** Opens a network namespace file; throws (with the fs error's `.code`, e.g. ENOENT) when it cannot be opened. */
export function openNetns(path: string): NetnsHandle {
  const fd = openSync(path, 'r');
  let open = true;
  return {
    fd,
    path,
    close(): void {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}

/** Returns the inode of the calling thread's network namespace (identifies the namespace). */
export function currentNetnsInode(): number {
  const fd = openSync(THREAD_NETNS_PATH, 'r');
  try {
    return fstatSync(fd).ino;
  } finally {
    closeSync(fd);
  }
}

/**
 * Runs `fn` synchronously with the main thread inside the given network namespace, then switches back
 * and closes what it opened (a passed handle stays open). Restores even when `fn` throws. `fn` must be
 * synchronous: use it to create sockets, which keep working in that namespace afterwards. Throws
 * NetnsError when the namespace cannot be entered; if switching back fails the thread is left in the
 * wrong namespace, which is unrecoverable: the error says so and callers should exit.
 */
export function withNetns<T>(netns: string | NetnsHandle, fn: () => T): T {
  const target = typeof netns === 'string' ? openNetns(netns) : netns;
  try {
    const original = openNetns(THREAD_NETNS_PATH);
    try {
      callSetns(target.fd, `enter network namespace ${target.path}`);
      try {
        const result = fn();
        if (typeof (result as { then?: unknown } | null)?.then === 'function') {
          throw new TypeError('withNetns: fn must be synchronous (its async part would run in the original namespace)');
        }
        return result;
      } finally {
        callSetns(original.fd, `return from network namespace ${target.path} (process left in the wrong namespace; exit now)`);
      }
    } finally {
      original.close();
    }
  } finally {
    if (target !== netns) target.close();
  }
}

type SetnsFn = (fd: number, nstype: number) => number;
type IoctlFn = (fd: number, request: number) => number;
interface Libc {
  setns: SetnsFn;
  ioctl: IoctlFn;
  errno: () => number;
}
let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc !== undefined) return libc;
  const lib = koffi.load('libc.so.6');
  // ioctl is variadic in C; NS_GET_NSTYPE takes no third argument.
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, ...)') as (fd: number, request: number) => number;
  libc = { setns: lib.func('int setns(int fd, int nstype)') as SetnsFn, ioctl, errno: () => koffi.errno() };
  return libc;
}

function callSetns(fd: number, what: string): void {
  const c = loadLibc();
  if (c.setns(fd, CLONE_NEWNET) === 0) return;
  const errno = c.errno();
  let code = `E${errno}`;
  try {
    code = getSystemErrorName(-errno);
  } catch {
    // unknown errno: keep the number
  }
  throw new NetnsError(`${what}: setns: ${code}`, code, errno);
}

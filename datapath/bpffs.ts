/**
 * The BPF filesystem, where maps, programs and links are pinned. Not mounted
 * at boot on our machines, so the agent (and tests) mount it on demand.
 */
import { lstatSync, mkdirSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';
import { BpfError } from './libbpf.ts';

const LIBC_SONAME = 'libc.so.6';
/** statfs f_type of a bpf filesystem (BPF_FS_MAGIC). */
const BPF_FS_MAGIC = 0xcafe4a11n;
/** sizeof(struct statfs) is 120 on 64-bit Linux; f_type is its first field (a long). */
const STATFS_SIZE_BYTES = 128;

interface LibcFs {
  statfs: (path: string, buf: Buffer) => number;
  mount: (source: string, target: string, fstype: string, flags: number, data: null) => number;
}

let libc: LibcFs | undefined;

function fs(): LibcFs {
  if (libc) return libc;
  const lib = koffi.load(LIBC_SONAME);
  libc = {
    statfs: lib.func('int statfs(const char *path, void *buf)'),
    mount: lib.func(
      'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)',
    ),
  };
  return libc;
}

/** True if `path` is (inside) a mounted bpf filesystem; false if absent or another filesystem. */
export function isBpffs(path: string): boolean {
  const buf = Buffer.alloc(STATFS_SIZE_BYTES);
  if (fs().statfs(path, buf) !== 0) return false;
  return BigInt.asUintN(32, buf.readBigInt64LE(0)) === BPF_FS_MAGIC;
}

/** Mounts bpffs at `mountPoint` unless one is already there; throws if the mount fails. */
export function ensureBpffs(mountPoint = '/sys/fs/bpf'): void {
  if (isBpffs(mountPoint)) return;
  mkdirSync(mountPoint, { recursive: true });
  if (fs().mount('bpf', mountPoint, 'bpf', 0, null) !== 0) {
    throw new BpfError(`mount bpffs at ${mountPoint}`, koffi.errno());
  }
}

/** rm -r for bpffs: unlink pins depth-first, then rmdir; absent → no-op. */
export function removePinTree(path: string): void {
  let stat;
  try {
    stat = lstatSync(path);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stat.isDirectory()) {
    unlinkSync(path);
    return;
  }
  for (const entry of readdirSync(path)) removePinTree(join(path, entry));
  rmdirSync(path);
}

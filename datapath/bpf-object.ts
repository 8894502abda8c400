/**
 * Where the compiled eBPF object comes from: $SLUICE_BPF_OBJECT when set (a
 * datapath built apart, e.g. to test an upgrade in place), else an asset of
 * the single executable in production, or dist/sluice.bpf.o in a source
 * checkout.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sea from 'node:sea';

/** Name of the object among the single executable's assets (see sea-config.json). */
export const BPF_OBJECT_ASSET = 'sluice.bpf.o';
/** Environment variable that names another object file (the single executable's own included). */
export const BPF_OBJECT_ENV = 'SLUICE_BPF_OBJECT';

/** The bytes of the eBPF object; throws ENOENT if it was not built (`make`). */
export function bpfObjectBytes(): Buffer {
  if (process.env[BPF_OBJECT_ENV]) return readFileSync(process.env[BPF_OBJECT_ENV]);
  if (sea.isSea()) return Buffer.from(sea.getAsset(BPF_OBJECT_ASSET));
  return readFileSync(bpfObjectPath());
}

/** The object's path when running from source: $SLUICE_BPF_OBJECT or <repo>/dist/sluice.bpf.o. */
export function bpfObjectPath(): string {
  const fromEnv = process.env[BPF_OBJECT_ENV];
  if (fromEnv) return fromEnv;
  // Only reached outside a single executable: the SEA bundle is CommonJS,
  // where import.meta does not exist.
  return join(import.meta.dirname, '..', 'dist', BPF_OBJECT_ASSET);
}

/** Name of the tracing object (bpf/trace.c: TCP health per pod) among the single executable's assets. */
export const TRACE_OBJECT_ASSET = 'sluice-trace.bpf.o';
/** Environment variable that overrides the tracing object's path outside a single executable. */
export const TRACE_OBJECT_ENV = 'SLUICE_TRACE_OBJECT';

/** The bytes of the tracing object; throws ENOENT if it was not built (`make`). */
export function traceObjectBytes(): Buffer {
  if (sea.isSea()) return Buffer.from(sea.getAsset(TRACE_OBJECT_ASSET));
  return readFileSync(process.env[TRACE_OBJECT_ENV] || join(import.meta.dirname, '..', 'dist', TRACE_OBJECT_ASSET));
}

/**
 * A BPF map behind an fd we own: raw Buffer keys and values, sizes checked.
 * Typed encoding lives in abi.ts; this file only moves bytes.
 */
import {
  closeFd,
  mapDeleteElem,
  mapGetNextKey,
  mapLookupElem,
  mapUpdateElem,
  numPossibleCpus,
  objGet,
} from './libbpf.ts';
import { readMapInfo } from './bpf-info.ts';

/** Create the entry or replace it. */
export const BPF_ANY = 0;
/** Create the entry only if it does not exist (EEXIST otherwise). */
export const BPF_NOEXIST = 1;
/** Replace the entry only if it exists (ENOENT otherwise). */
export const BPF_EXIST = 2;

/** Per-CPU map values are laid out in slots rounded up to 8 bytes. */
const PERCPU_SLOT_ALIGN_BYTES = 8;

/** One open BPF map; close() releases the fd (the map lives on while pinned or in use). */
export class BpfMap {
  readonly fd: number;
  readonly name: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly perCpu: boolean;
  #closed = false;

  /** Wraps an fd the caller hands over (closed by close()). */
  constructor(fd: number, name: string, keySize: number, valueSize: number, perCpu = false) {
    this.fd = fd;
    this.name = name;
    this.keySize = keySize;
    this.valueSize = valueSize;
    this.perCpu = perCpu;
  }

  /** Opens a pinned map; throws ENOENT if nothing is pinned there, EINVAL if the key/value sizes differ. */
  static openPinned(path: string, name: string, keySize: number, valueSize: number, perCpu = false): BpfMap {
    const fd = objGet(path, `map ${name}`);
    try {
      const { keySize: actualKey, valueSize: actualValue } = readMapInfo(fd, `map ${name}`);
      if (actualKey !== keySize || actualValue !== valueSize) {
        throw new Error(
          `open pinned map ${name} at ${path}: key/value size ${actualKey}/${actualValue}, ` +
            `expected ${keySize}/${valueSize} (left by an incompatible datapath version?)`,
        );
      }
    } catch (err: unknown) {
      closeFd(fd);
      throw err;
    }
    return new BpfMap(fd, name, keySize, valueSize, perCpu);
  }

  /** Writes an entry; for a per-CPU map a single value is copied to every CPU. */
  update(key: Buffer, value: Buffer, flags: number = BPF_ANY): void {
    this.#checkKey(key);
    let raw = value;
    if (this.perCpu && value.length === this.valueSize) {
      const stride = this.#perCpuStride();
      raw = Buffer.alloc(stride * numPossibleCpus());
      for (let at = 0; at < raw.length; at += stride) value.copy(raw, at);
    } else if (value.length !== this.valueSize) {
      throw new Error(`update map ${this.name}: value is ${value.length} bytes, need ${this.valueSize}`);
    }
    mapUpdateElem(this.fd, key, raw, flags, `map ${this.name}`);
  }

  /** The value for `key`, or null if absent. Per-CPU maps: use lookupPerCpu. */
  lookup(key: Buffer): Buffer | null {
    if (this.perCpu) throw new Error(`look up map ${this.name}: per-CPU map, use lookupPerCpu()`);
    this.#checkKey(key);
    const value = Buffer.alloc(this.valueSize);
    return mapLookupElem(this.fd, key, value, `map ${this.name}`) ? value : null;
  }

  /** One value per possible CPU for `key`, or an empty array if absent. */
  lookupPerCpu(key: Buffer): Buffer[] {
    this.#checkKey(key);
    const stride = this.#perCpuStride();
    const cpus = numPossibleCpus();
    const raw = Buffer.alloc(stride * cpus);
    if (!mapLookupElem(this.fd, key, raw, `map ${this.name}`)) return [];
    const values: Buffer[] = [];
    for (let cpu = 0; cpu < cpus; cpu++) values.push(raw.subarray(cpu * stride, cpu * stride + this.valueSize));
    return values;
  }

  /** Removes `key`; false if it was not there. */
  delete(key: Buffer): boolean {
    this.#checkKey(key);
    return mapDeleteElem(this.fd, key, `map ${this.name}`);
  }

  /** Every key currently in the map (a snapshot; concurrent changes may be missed). */
  keys(): Buffer[] {
    const keys: Buffer[] = [];
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      if (!mapGetNextKey(this.fd, prev, next, `map ${this.name}`)) return keys;
      keys.push(next);
      prev = next;
    }
  }

  /** Releases the fd; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.fd);
  }

  #perCpuStride(): number {
    return Math.ceil(this.valueSize / PERCPU_SLOT_ALIGN_BYTES) * PERCPU_SLOT_ALIGN_BYTES;
  }

  #checkKey(key: Buffer): void {
    if (this.#closed) throw new Error(`map ${this.name}: used after close()`);
    if (key.length !== this.keySize) {
      throw new Error(`map ${this.name}: key is ${key.length} bytes, need ${this.keySize}`);
    }
  }
}

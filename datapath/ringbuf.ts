/**
 * Reads a BPF ring buffer. The agent calls poll() from a timer, which hands
 * every pending record to the callback synchronously on the calling thread.
 *
 * On x86-64 the reader maps the ring into the process (mmap through koffi)
 * and walks the records in JavaScript, as libbpf's ring_buffer__consume
 * does in C: no FFI call per record, no copy, and no system call when the
 * ring is empty. This matters because every new flow and every L7 message is
 * one record: the per-record FFI callback and the copy it needed were a third
 * of the agent's cost per flow record. The positions and each record's header
 * are read with Atomics.load, which the compiler does not move across other
 * loads; x86-64 keeps loads in order (TSO), so these pair with the kernel's
 * release stores as libbpf's acquire loads do. Other architectures need a
 * hardware acquire that JavaScript cannot ask for on this memory: there the
 * reader uses libbpf's callback API instead.
 *
 * The kernel's layout (kernel/bpf/ringbuf.c): page 0 holds consumer_pos
 * (written by us); from page 1, mapped read-only: producer_pos, then the
 * data area mapped twice in a row, so a record that wraps reads as one run.
 * Each record starts with an 8-byte header: its length, with a busy bit
 * (still being written) and a discard bit, then a page offset.
 */
import koffi, { type TypeObject } from 'koffi';
import { readMapInfo } from './bpf-info.ts';
import { BpfError } from './libbpf.ts';

const LIBBPF_SONAME = 'libbpf.so.1';
const LIBC_SONAME = 'libc.so.6';
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const SC_PAGESIZE = 30;
const MAP_FAILED = 0xffffffffffffffffn;
const BUSY_BIT = 0x80000000;
const DISCARD_BIT = 0x40000000;
const HEADER_BYTES = 8;
/** Records handed out before consumer_pos is written back, so a long batch frees room as it goes. */
const RELEASE_EVERY = 64;

type Fn = (...args: unknown[]) => unknown;

interface LibbpfRingbuf {
  sampleCallback: TypeObject;
  create: Fn;
  consume: Fn;
  free: Fn;
}
let libbpf: LibbpfRingbuf | undefined;

function libbpfRingbuf(): LibbpfRingbuf {
  if (libbpf) return libbpf;
  const bpf = koffi.load(LIBBPF_SONAME);
  const rbPtr = koffi.pointer(koffi.opaque());
  const sampleCallback = koffi.proto('int sluice_ringbuf_sample(void *ctx, void *data, size_t size)');
  libbpf = {
    sampleCallback,
    create: bpf.func('ring_buffer__new', rbPtr, ['int', koffi.pointer(sampleCallback), 'void *', 'void *']),
    consume: bpf.func('ring_buffer__consume', 'int', [rbPtr]),
    free: bpf.func('ring_buffer__free', 'void', [rbPtr]),
  };
  return libbpf;
}

interface LibcMmap {
  mmap: Fn;
  munmap: Fn;
  sysconf: Fn;
}
let libc: LibcMmap | undefined;

function libcMmap(): LibcMmap {
  if (libc) return libc;
  const c = koffi.load(LIBC_SONAME);
  libc = {
    mmap: c.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)'),
    munmap: c.func('int munmap(void *addr, size_t length)'),
    sysconf: c.func('long sysconf(int name)'),
  };
  return libc;
}

/** A mapping of `length` bytes of the map behind `fd` at `offset`, as an ArrayBuffer over the same memory. */
function mapRegion(fd: number, length: number, prot: number, offset: number, what: string): { ptr: unknown; length: number; bytes: ArrayBuffer } {
  const c = libcMmap();
  const ptr = c.mmap(null, length, prot, MAP_SHARED, fd, offset);
  if (ptr === null || BigInt(koffi.address(ptr)) === MAP_FAILED) throw new BpfError(`map ${what} of ring buffer`, koffi.errno());
  return { ptr, length, bytes: koffi.view(ptr, length) };
}

/** A consumer of one ring buffer map. onRecord gets a view of each record, valid only during the call: copy what you keep. */
export class RingBufferReader {
  private readonly consume: () => number;
  private readonly release: () => void;
  private closed = false;

  /** Opens the ring buffer behind mapFd. Throws BpfError. */
  constructor(mapFd: number, onRecord: (record: Buffer) => void) {
    const r = process.arch === 'x64' ? mappedReader(mapFd, onRecord) : libbpfReader(mapFd, onRecord);
    this.consume = r.consume;
    this.release = r.release;
  }

  /** Delivers every pending record; returns how many, or throws BpfError. */
  poll(): number {
    if (this.closed) return 0;
    return this.consume();
  }

  /** Unmaps the ring (or frees libbpf's consumer). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
  }
}

interface Reader {
  consume: () => number;
  release: () => void;
}

function mappedReader(mapFd: number, onRecord: (record: Buffer) => void): Reader {
  const size = readMapInfo(mapFd, 'ring buffer').maxEntries;
  const page = Number(libcMmap().sysconf(SC_PAGESIZE));
  const consumerMap = mapRegion(mapFd, page, PROT_READ | PROT_WRITE, 0, 'consumer page');
  let producerMap: ReturnType<typeof mapRegion>;
  try {
    producerMap = mapRegion(mapFd, page + 2 * size, PROT_READ, page, 'data');
  } catch (err: unknown) {
    libcMmap().munmap(consumerMap.ptr, consumerMap.length);
    throw err;
  }
  const consumerPos = new BigUint64Array(consumerMap.bytes, 0, 1);
  const producerHalves = new Uint32Array(producerMap.bytes, 0, 2);
  const data = Buffer.from(producerMap.bytes, page, 2 * size);
  // Headers are 8-byte aligned: read as words with Atomics.load.
  const words = new Uint32Array(producerMap.bytes, page, (2 * size) / 4);
  // Positions only grow (a byte count): a double holds them exactly far beyond any uptime.
  const producerPos = (): number => {
    for (;;) {
      const hi = Atomics.load(producerHalves, 1);
      const lo = Atomics.load(producerHalves, 0);
      if (Atomics.load(producerHalves, 1) === hi) return hi * 2 ** 32 + lo;
    }
  };
  let cons = Number(consumerPos[0]!);
  return {
    consume(): number {
      let delivered = 0;
      let unreleased = 0;
      try {
        for (let prod = producerPos(); cons < prod; prod = producerPos()) {
          while (cons < prod) {
            const at = cons % size;
            const header = Atomics.load(words, at >>> 2);
            if (header & BUSY_BIT) return delivered;
            const len = header & ~(BUSY_BIT | DISCARD_BIT);
            const start = at + HEADER_BYTES;
            cons += (len + HEADER_BYTES + 7) & ~7;
            if (!(header & DISCARD_BIT)) {
              delivered++;
              onRecord(data.subarray(start, start + len));
            }
            if (++unreleased === RELEASE_EVERY) {
              consumerPos[0] = BigInt(cons);
              unreleased = 0;
            }
          }
        }
        return delivered;
      } finally {
        if (unreleased > 0) consumerPos[0] = BigInt(cons);
      }
    },
    release(): void {
      libcMmap().munmap(producerMap.ptr, producerMap.length);
      libcMmap().munmap(consumerMap.ptr, consumerMap.length);
    },
  };
}

function libbpfReader(mapFd: number, onRecord: (record: Buffer) => void): Reader {
  const l = libbpfRingbuf();
  const registered = koffi.register((_ctx: unknown, data: unknown, size: number | bigint) => {
    onRecord(Buffer.from(koffi.view(data, Number(size))));
    return 0;
  }, koffi.pointer(l.sampleCallback));
  const rb = l.create(mapFd, registered, null, null);
  if (!rb) {
    koffi.unregister(registered);
    throw new BpfError('open ring buffer', koffi.errno());
  }
  return {
    consume(): number {
      const n = l.consume(rb) as number;
      if (n < 0) throw new BpfError('consume ring buffer', -n);
      return n;
    },
    release(): void {
      l.free(rb);
      koffi.unregister(registered);
    },
  };
}

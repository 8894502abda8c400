/**
 * Reads a BPF ring buffer with libbpf's ring_buffer API through koffi: the
 * agent calls poll() from a timer, which hands every pending record to the
 * callback synchronously on the calling thread.
 */
import koffi, { type TypeObject } from 'koffi';
import { BpfError } from './libbpf.ts';

const LIBBPF_SONAME = 'libbpf.so.1';

type Fn = (...args: unknown[]) => unknown;
interface RingbufBindings {
  sampleCallback: TypeObject;
  create: Fn;
  consume: Fn;
  free: Fn;
}
let bindings: RingbufBindings | undefined;

function lib(): RingbufBindings {
  if (bindings) return bindings;
  const bpf = koffi.load(LIBBPF_SONAME);
  const rbPtr = koffi.pointer(koffi.opaque());
  const sampleCallback = koffi.proto('int sluice_ringbuf_sample(void *ctx, void *data, size_t size)');
  bindings = {
    sampleCallback,
    create: bpf.func('ring_buffer__new', rbPtr, ['int', koffi.pointer(sampleCallback), 'void *', 'void *']),
    consume: bpf.func('ring_buffer__consume', 'int', [rbPtr]),
    free: bpf.func('ring_buffer__free', 'void', [rbPtr]),
  };
  return bindings;
}

/** A consumer of one ring buffer map. */
export class RingBufferReader {
  private readonly rb: unknown;
  private readonly registered: bigint;
  private closed = false;

  /** Opens the ring buffer behind mapFd; onRecord gets a copy of each record. Throws BpfError. */
  constructor(mapFd: number, onRecord: (record: Buffer) => void) {
    const l = lib();
    this.registered = koffi.register((_ctx: unknown, data: unknown, size: number | bigint) => {
      const bytes = koffi.decode(data, koffi.array('uint8_t', Number(size))) as number[] | Uint8Array;
      onRecord(Buffer.from(bytes as Uint8Array));
      return 0;
    }, koffi.pointer(l.sampleCallback));
    this.rb = l.create(mapFd, this.registered, null, null);
    if (!this.rb) {
      koffi.unregister(this.registered);
      throw new BpfError('open ring buffer', koffi.errno());
    }
  }

  /** Delivers every pending record; returns how many, or throws BpfError. */
  poll(): number {
    if (this.closed) return 0;
    const n = lib().consume(this.rb) as number;
    if (n < 0) throw new BpfError('consume ring buffer', -n);
    return n;
  }

  /** Frees the consumer and its callback slot. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    lib().free(this.rb);
    koffi.unregister(this.registered);
  }
}

/**
 * The ring buffer reader (datapath/ringbuf.ts) against records the kernel
 * writes: a small BPF_PROG_TYPE_SYSCALL program, run with BPF_PROG_TEST_RUN,
 * reserves a record of one of three sizes in a 4 KiB ring, writes a sequence
 * number, then submits or discards it. Thousands of records wrap the ring
 * many times, with polls at random moments and the ring often full: every
 * submitted record arrives once, in order, whole; no discarded one arrives.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeObject, findMap, findProgram, loadObject, mapFd, openObjectFromMemory, programFd, runSyscallProgram, type BpfObjectHandle } from '../datapath/libbpf.ts';
import { RingBufferReader } from '../datapath/ringbuf.ts';

const RING_BYTES = 4096;
/** Record sizes by class: the payload the program reserves (the header adds 8, rounded to 8). */
const SIZES = [8, 108, 1000];

const SOURCE = `
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, ${RING_BYTES});
} rb SEC(".maps");

struct args { __u32 seq; __u32 size_class; __u32 discard; };

#define PRODUCE(bytes) do {                                     \\
		__u32 *p = bpf_ringbuf_reserve(&rb, bytes, 0);          \\
		if (!p)                                                 \\
			return 1;                                           \\
		p[0] = seq;                                             \\
		p[(bytes) / 4 - 1] = seq ^ 0xa5a5a5a5;                   \\
		if (discard)                                            \\
			bpf_ringbuf_discard(p, 0);                          \\
		else                                                    \\
			bpf_ringbuf_submit(p, 0);                           \\
		return 0;                                               \\
	} while (0)

SEC("syscall")
int produce(struct args *a)
{
	__u32 seq = a->seq, discard = a->discard;

	switch (a->size_class) {
	case 0: PRODUCE(${SIZES[0]});
	case 1: PRODUCE(${SIZES[1]});
	default: PRODUCE(${SIZES[2]});
	}
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
`;

describe('RingBufferReader', () => {
  let dir = '';
  let obj: BpfObjectHandle | null = null;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ringbuf-'));
    fs.writeFileSync(path.join(dir, 'rb.c'), SOURCE);
    execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', path.join(dir, 'rb.c'), '-o', path.join(dir, 'rb.o')]);
    obj = openObjectFromMemory(fs.readFileSync(path.join(dir, 'rb.o')), { objectName: 'rbtest', pinRootPath: dir });
    loadObject(obj, 'rbtest');
  });
  afterAll(() => {
    if (obj) closeObject(obj);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('delivers every submitted record once, in order and whole, across many wraps; skips discarded ones', () => {
    const prog = programFd(findProgram(obj!, 'produce'), 'produce');
    const got: { seq: number; len: number; tail: number }[] = [];
    const reader = new RingBufferReader(mapFd(findMap(obj!, 'rb'), 'rb'), (r) => {
      got.push({ seq: r.readUInt32LE(0), len: r.length, tail: r.readUInt32LE(r.length - 4) });
    });
    // A fixed pseudo-random sequence (an LCG): the same run every time.
    let state = 12345;
    const random = (n: number) => ((state = (state * 1103515245 + 12345) >>> 0) >>> 8) % n;
    const want: { seq: number; len: number; tail: number }[] = [];
    const args = Buffer.alloc(12);
    let full = 0;
    try {
      for (let seq = 0; seq < 5000; seq++) {
        const sizeClass = random(3);
        const discard = random(10) === 0;
        args.writeUInt32LE(seq, 0);
        args.writeUInt32LE(sizeClass, 4);
        args.writeUInt32LE(discard ? 1 : 0, 8);
        let ret = runSyscallProgram(prog, args, 'produce');
        if (ret === 1) {
          // The ring is full: what the reader frees makes room.
          full++;
          reader.poll();
          ret = runSyscallProgram(prog, args, 'produce');
        }
        expect(ret).toBe(0);
        if (!discard) want.push({ seq, len: SIZES[sizeClass]!, tail: (seq ^ 0xa5a5a5a5) >>> 0 });
        if (random(7) === 0) reader.poll();
      }
      reader.poll();
    } finally {
      reader.close();
    }
    expect(full, 'the ring never filled: the test did not wrap under pressure').toBeGreaterThan(100);
    const firstDiff = got.findIndex((g, i) => JSON.stringify(g) !== JSON.stringify(want[i]));
    expect(firstDiff, JSON.stringify([got.slice(Math.max(0, firstDiff - 2), firstDiff + 2), want.slice(Math.max(0, firstDiff - 2), firstDiff + 2)])).toBe(-1);
    expect(got).toEqual(want);
  });
});

/**
 * Which kinds of security hooks load on this kernel. The sensor itself uses
 * tp_btf, classic tracepoints and cgroup hooks; fentry, kprobes and BPF LSM
 * are what a stronger mode would use (a file_open or socket_connect LSM hook
 * refuses in the kernel, a kprobe reaches any function). The agent probes
 * them once at start and reports each in `sluice status` with the reason one
 * is missing (on our VMs: fentry and LSM EPERM, kprobes ENOENT).
 *
 * Each probe loads a two-instruction program ("return 0") with BPF_PROG_LOAD
 * and attaches it for a moment to a rarely called function (do_unlinkat, or
 * the LSM hook of an unlink), then closes it: nothing stays attached.
 */
import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import { closeFd, errnoCode, linkCreate } from './libbpf.ts';
import { errorMessage } from '../lib/errors.ts';

/** A hook kind and whether it loads and attaches here. */
export interface SecurityModeProbe {
  /** tp_btf: what the sensor uses, probed the same way as a control (false would mean the probe itself is broken). */
  mode: 'tp_btf' | 'fentry' | 'kprobe' | 'lsm';
  available: boolean;
  /** Why not: the failing step and its errno ("attach: EPERM"). */
  reason?: string;
}

const SYS_BPF_X86_64 = 321;
const SYS_PERF_EVENT_OPEN_X86_64 = 298;
const BPF_PROG_LOAD = 5;
const BPF_PROG_TYPE_KPROBE = 2;
const BPF_PROG_TYPE_TRACING = 26;
const BPF_PROG_TYPE_LSM = 29;
const BPF_TRACE_RAW_TP = 23;
const BPF_TRACE_FENTRY = 24;
const BPF_LSM_MAC = 27;
const BPF_PERF_EVENT = 41;
/** The bpf_attr prefix BPF_PROG_LOAD fills here (through attach_btf_obj_fd); the kernel takes a shorter attr. */
const PROG_LOAD_ATTR_BYTES = 128;
const PERF_ATTR_SIZE = 136;
const PERF_FLAG_FD_CLOEXEC = 8;
/** r0 = 0; exit. */
const RETURN_ZERO = Buffer.from([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
const LICENSE = Buffer.from('GPL\0');

const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';
const KPROBE_PMU_TYPE = '/sys/bus/event_source/devices/kprobe/type';
const TP_BTF_TARGET = 'btf_trace_sched_process_exec';
const FENTRY_TARGET = 'do_unlinkat';
const KPROBE_TARGET = 'do_unlinkat';
const LSM_TARGET = 'bpf_lsm_inode_unlink';

type Fn = (...args: unknown[]) => unknown;
let syscall: Fn | undefined;

function sys(): Fn {
  syscall ??= koffi.load('libc.so.6').func('long syscall(long number, ...)');
  return syscall;
}

class ProbeError extends Error {}

function fail(step: string, errno: number): never {
  throw new ProbeError(`${step}: ${errnoCode(errno)}`);
}

/** Probes tp_btf (the control), fentry, kprobe and BPF LSM in turn; never throws. */
export function probeSecurityModes(): SecurityModeProbe[] {
  if (process.arch !== 'x64') return (['tp_btf', 'fentry', 'kprobe', 'lsm'] as const).map((mode) => ({ mode, available: false, reason: `not probed on ${process.arch}` }));
  let btf: Buffer | null = null;
  const typeId = (kind: number, name: string): number => {
    btf ??= readFileSync(VMLINUX_BTF);
    const id = btfTypeId(btf, kind, name);
    if (id === null) throw new ProbeError(`${name} not in the kernel's BTF`);
    return id;
  };
  const funcId = (name: string) => typeId(BTF_KIND_FUNC, name);
  return [
    probe('tp_btf', () => attachTracing(BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, typeId(BTF_KIND_TYPEDEF, TP_BTF_TARGET))),
    probe('fentry', () => attachTracing(BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, funcId(FENTRY_TARGET))),
    probe('kprobe', attachKprobe),
    probe('lsm', () => attachTracing(BPF_PROG_TYPE_LSM, BPF_LSM_MAC, funcId(LSM_TARGET))),
  ];
}

function probe(mode: SecurityModeProbe['mode'], attempt: () => void): SecurityModeProbe {
  try {
    attempt();
    return { mode, available: true };
  } catch (err: unknown) {
    return { mode, available: false, reason: errorMessage(err) };
  }
}

function progLoad(type: number, expectedAttachType: number, attachBtfId: number): number {
  const attr = Buffer.alloc(PROG_LOAD_ATTR_BYTES);
  attr.writeUInt32LE(type, 0);
  attr.writeUInt32LE(RETURN_ZERO.length / 8, 4);
  attr.writeBigUInt64LE(BigInt(koffi.address(RETURN_ZERO)), 8);
  attr.writeBigUInt64LE(BigInt(koffi.address(LICENSE)), 16);
  attr.write('sluice_probe', 48);
  attr.writeUInt32LE(expectedAttachType, 68);
  attr.writeUInt32LE(attachBtfId, 108);
  const fd = Number(sys()(SYS_BPF_X86_64, 'int', BPF_PROG_LOAD, 'void *', attr, 'unsigned int', attr.length));
  if (fd < 0) fail('load', koffi.errno());
  return fd;
}

function attachTracing(type: number, attachType: number, btfId: number): void {
  const prog = progLoad(type, attachType, btfId);
  try {
    let link: number;
    try {
      link = linkCreate(prog, 0, attachType, 'attach');
    } catch (err: unknown) {
      throw new ProbeError(errorMessage(err));
    }
    closeFd(link);
  } finally {
    closeFd(prog);
  }
}

function attachKprobe(): void {
  const prog = progLoad(BPF_PROG_TYPE_KPROBE, 0, 0);
  try {
    let pmuType: number;
    try {
      pmuType = Number(readFileSync(KPROBE_PMU_TYPE, 'utf8').trim());
    } catch {
      throw new ProbeError(`attach: ENOENT (no kprobe PMU: ${KPROBE_PMU_TYPE})`);
    }
    const target = Buffer.from(`${KPROBE_TARGET}\0`);
    const attr = Buffer.alloc(PERF_ATTR_SIZE);
    attr.writeUInt32LE(pmuType, 0);
    attr.writeUInt32LE(PERF_ATTR_SIZE, 4);
    attr.writeBigUInt64LE(1n, 16); // sample_period
    attr.writeBigUInt64LE(BigInt(koffi.address(target)), 56); // config1: kprobe_func
    const perf = Number(sys()(SYS_PERF_EVENT_OPEN_X86_64, 'void *', attr, 'int', -1, 'int', 0, 'int', -1, 'unsigned long', PERF_FLAG_FD_CLOEXEC));
    if (perf < 0) fail('perf_event_open kprobe', koffi.errno());
    try {
      closeFd(linkCreate(prog, perf, BPF_PERF_EVENT, 'attach'));
    } catch (err: unknown) {
      throw new ProbeError(errorMessage(err));
    } finally {
      closeFd(perf);
    }
  } finally {
    closeFd(prog);
  }
}

const BTF_MAGIC = 0xeb9f;
const BTF_KIND_TYPEDEF = 8;
const BTF_KIND_FUNC = 12;
/** Bytes after the 12-byte common part of a BTF type, by kind (vlen: the type's member count). */
function extraBytes(kind: number, vlen: number): number {
  switch (kind) {
    case 1: // INT
    case 14: // VAR
    case 17: // DECL_TAG
      return 4;
    case 3: // ARRAY
      return 12;
    case 4: // STRUCT
    case 5: // UNION
    case 15: // DATASEC
    case 19: // ENUM64
      return 12 * vlen;
    case 6: // ENUM
    case 13: // FUNC_PROTO
      return 8 * vlen;
    default: // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
      return 0;
  }
}

/** The id of the BTF type of that kind (12: FUNC, 8: TYPEDEF) and name in a raw BTF blob (/sys/kernel/btf/vmlinux); null when absent. */
export function btfTypeId(btf: Buffer, wantedKind: number, name: string): number | null {
  if (btf.readUInt16LE(0) !== BTF_MAGIC) throw new Error('not a BTF blob');
  const hdrLen = btf.readUInt32LE(4);
  const typeStart = hdrLen + btf.readUInt32LE(8);
  const typeEnd = typeStart + btf.readUInt32LE(12);
  const strStart = hdrLen + btf.readUInt32LE(16);
  const wanted = Buffer.from(`${name}\0`);
  let id = 1;
  for (let at = typeStart; at < typeEnd; id++) {
    const nameOff = btf.readUInt32LE(at);
    const info = btf.readUInt32LE(at + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    if (kind === wantedKind && btf.compare(wanted, 0, wanted.length, strStart + nameOff, strStart + nameOff + wanted.length) === 0) return id;
    at += 12 + extraBytes(kind, vlen);
  }
  return null;
}

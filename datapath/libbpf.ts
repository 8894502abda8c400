/**
 * koffi bindings to the system libbpf (libbpf.so.1) and the one libc call the
 * datapath needs (close). Loaded on first use: the CNI binary must start fast
 * and most of its runs never touch BPF.
 *
 * Every wrapper throws a BpfError naming the operation and the object on
 * failure; libbpf 1.x returns -errno (or NULL with errno set).
 */
import { constants as osConstants } from 'node:os';
import koffi from 'koffi';

const LIBBPF_SONAME = 'libbpf.so.1';
const LIBC_SONAME = 'libc.so.6';

/** Kernel-internal errno (not in libc) returned for unsupported operations. */
const ENOTSUPP = 524;

/** libbpf's own error codes (LIBBPF_ERRNO__*), which start at 4000. */
const LIBBPF_ERRNO_NAMES: Record<number, string> = {
  4000: 'LIBBPF_LIBELF',
  4001: 'LIBBPF_FORMAT',
  4002: 'LIBBPF_KVERSION',
  4003: 'LIBBPF_ENDIAN',
  4004: 'LIBBPF_INTERNAL',
  4005: 'LIBBPF_RELOC',
  4006: 'LIBBPF_LOAD',
  4007: 'LIBBPF_VERIFY',
  4008: 'LIBBPF_PROG2BIG',
  4009: 'LIBBPF_KVER',
  4010: 'LIBBPF_PROGTYPE',
  4011: 'LIBBPF_WRNGPID',
  4012: 'LIBBPF_INVSEQ',
  4013: 'LIBBPF_NLPARSE',
};

/** bpf_attach_type values for TCX (Linux 6.6+; newer than libbpf 1.1's headers). */
export const BPF_TCX_INGRESS = 46;
/** See BPF_TCX_INGRESS. */
export const BPF_TCX_EGRESS = 47;

/** A live `struct bpf_object *` (opaque to us). */
export type BpfObjectHandle = bigint;
/** A `struct bpf_program *` inside a BpfObjectHandle. */
export type BpfProgramHandle = bigint;
/** A `struct bpf_map *` inside a BpfObjectHandle. */
export type BpfMapHandle = bigint;

let errnoNames: Map<number, string> | undefined;

/** The symbolic name of an errno value ('ENOENT'), or 'E<number>' if unknown. */
export function errnoCode(errno: number): string {
  if (!errnoNames) {
    errnoNames = new Map();
    for (const [name, value] of Object.entries(osConstants.errno)) {
      if (!errnoNames.has(value)) errnoNames.set(value, name);
    }
    errnoNames.set(ENOTSUPP, 'ENOTSUPP');
  }
  return errnoNames.get(errno) ?? LIBBPF_ERRNO_NAMES[errno] ?? `E${errno}`;
}

/** A failed bpf/libbpf call: `.errno` (positive) and `.code` ('ENOENT') let callers branch. */
export class BpfError extends Error {
  readonly errno: number;
  readonly code: string;

  constructor(operation: string, errno: number) {
    const code = errnoCode(errno);
    super(`${operation}: ${code}`);
    this.name = 'BpfError';
    this.errno = errno;
    this.code = code;
  }
}

/** True if `err` is a BpfError with the given code (e.g. 'ENOENT'). */
export function isBpfError(err: unknown, code?: string): err is BpfError {
  return err instanceof BpfError && (code === undefined || err.code === code);
}

/** Options for openObjectFromMemory: the subset of bpf_object_open_opts we use. */
export interface OpenObjectOptions {
  objectName: string;
  /** Where maps with LIBBPF_PIN_BY_NAME are pinned and re-used from. */
  pinRootPath: string;
}

type Fn = (...args: unknown[]) => unknown;

interface Bindings {
  openMem: Fn;
  load: Fn;
  close: Fn;
  findProgram: Fn;
  programFd: Fn;
  programPin: Fn;
  findMap: Fn;
  mapFd: Fn;
  objGet: Fn;
  objPin: Fn;
  mapUpdate: Fn;
  mapLookup: Fn;
  mapDelete: Fn;
  mapNextKey: Fn;
  linkCreate: Fn;
  linkDetach: Fn;
  linkUpdate: Fn;
  objInfo: Fn;
  mapType: Fn;
  mapKeySize: Fn;
  mapValueSize: Fn;
  mapMaxEntries: Fn;
  mapSetMaxEntries: Fn;
  mapFlags: Fn;
  nextMap: Fn;
  mapName: Fn;
  mapCreate: Fn;
  numCpus: Fn;
  libcClose: Fn;
  progTestRun: Fn;
  registerProgHandler: Fn;
  syscall: Fn;
  openOptsSize: number;
  testRunOptsSize: number;
}

let bindings: Bindings | undefined;

function lib(): Bindings {
  if (bindings) return bindings;
  const bpf = koffi.load(LIBBPF_SONAME);
  const libc = koffi.load(LIBC_SONAME);
  // Anonymous types: koffi type names are process-global and this module may be loaded twice.
  const objectPtr = koffi.pointer(koffi.opaque());
  const programPtr = koffi.pointer(koffi.opaque());
  const mapPtr = koffi.pointer(koffi.opaque());
  // Only the leading fields we set; `sz` tells libbpf where our struct ends.
  const openOpts = koffi.struct({
    sz: 'size_t',
    object_name: 'const char *',
    relaxed_maps: 'bool',
    pin_root_path: 'const char *',
  });
  // struct bpf_test_run_opts up to ctx_size_out (libbpf 1.1); retval and the rest are read back by offset.
  const testRunOpts = koffi.struct({
    sz: 'size_t',
    data_in: 'void *',
    data_out: 'void *',
    data_size_in: 'uint32_t',
    data_size_out: 'uint32_t',
    ctx_in: 'void *',
    ctx_out: 'void *',
    ctx_size_in: 'uint32_t',
    ctx_size_out: 'uint32_t',
    retval: 'uint32_t',
  });
  bindings = {
    openMem: bpf.func('bpf_object__open_mem', objectPtr, ['const void *', 'size_t', koffi.pointer(openOpts)]),
    load: bpf.func('bpf_object__load', 'int', [objectPtr]),
    close: bpf.func('bpf_object__close', 'void', [objectPtr]),
    findProgram: bpf.func('bpf_object__find_program_by_name', programPtr, [objectPtr, 'const char *']),
    programFd: bpf.func('bpf_program__fd', 'int', [programPtr]),
    programPin: bpf.func('bpf_program__pin', 'int', [programPtr, 'const char *']),
    findMap: bpf.func('bpf_object__find_map_by_name', mapPtr, [objectPtr, 'const char *']),
    mapFd: bpf.func('bpf_map__fd', 'int', [mapPtr]),
    objGet: bpf.func('int bpf_obj_get(const char *pathname)'),
    objPin: bpf.func('int bpf_obj_pin(int fd, const char *pathname)'),
    mapUpdate: bpf.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
    mapLookup: bpf.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
    mapDelete: bpf.func('int bpf_map_delete_elem(int fd, const void *key)'),
    mapNextKey: bpf.func('int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
    linkCreate: bpf.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)'),
    linkDetach: bpf.func('int bpf_link_detach(int link_fd)'),
    linkUpdate: bpf.func('int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)'),
    objInfo: bpf.func('int bpf_obj_get_info_by_fd(int bpf_fd, void *info, void *info_len)'),
    mapType: bpf.func('bpf_map__type', 'int', [mapPtr]),
    mapKeySize: bpf.func('bpf_map__key_size', 'uint32_t', [mapPtr]),
    mapValueSize: bpf.func('bpf_map__value_size', 'uint32_t', [mapPtr]),
    mapMaxEntries: bpf.func('bpf_map__max_entries', 'uint32_t', [mapPtr]),
    mapSetMaxEntries: bpf.func('bpf_map__set_max_entries', 'int', [mapPtr, 'uint32_t']),
    mapFlags: bpf.func('bpf_map__map_flags', 'uint32_t', [mapPtr]),
    nextMap: bpf.func('bpf_object__next_map', mapPtr, [objectPtr, mapPtr]),
    mapName: bpf.func('bpf_map__name', 'const char *', [mapPtr]),
    mapCreate: bpf.func('int bpf_map_create(int map_type, const char *map_name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const void *opts)'),
    numCpus: bpf.func('int libbpf_num_possible_cpus(void)'),
    libcClose: libc.func('int close(int fd)'),
    progTestRun: bpf.func('bpf_prog_test_run_opts', 'int', ['int', koffi.inout(koffi.pointer(testRunOpts))]),
    registerProgHandler: bpf.func('int libbpf_register_prog_handler(const char *sec, int prog_type, int exp_attach_type, const void *opts)'),
    syscall: libc.func('long syscall(long number, ...)'),
    openOptsSize: koffi.sizeof(openOpts),
    testRunOptsSize: koffi.sizeof(testRunOpts),
  };
  return bindings;
}

/** Returns a non-negative libbpf result, or throws for a -errno one. */
function check(ret: unknown, operation: string): number {
  const value = Number(ret);
  if (value < 0) throw new BpfError(operation, -value);
  return value;
}

/** Returns a non-NULL pointer, or throws with the errno libbpf left behind. */
function checkPointer(ret: unknown, operation: string): bigint {
  if (ret === null || ret === undefined || ret === 0n) {
    throw new BpfError(operation, koffi.errno() || osConstants.errno.EINVAL);
  }
  return ret as bigint;
}

/*
 * Netfilter programs (Linux 6.4) are newer than the libbpf 1.1 of Debian 12,
 * which knows neither their SEC("netfilter") nor how to attach them. Once per
 * process we teach it the section (program type and expected attach type),
 * and netfilterLinkCreate() makes the link with the bpf() syscall itself.
 */
const BPF_PROG_TYPE_NETFILTER = 32;
export const BPF_NETFILTER = 45;
const BPF_LINK_CREATE = 28;
const SYS_BPF_X86_64 = 321;
/** union bpf_attr's link_create: prog_fd, target_fd, attach_type, flags, then netfilter { pf, hooknum, priority, flags }. */
const LINK_CREATE_ATTR_BYTES = 32;
let netfilterSectionKnown = false;

function knowNetfilterSection(b: Bindings): void {
  if (netfilterSectionKnown) return;
  check(b.registerProgHandler('netfilter', BPF_PROG_TYPE_NETFILTER, BPF_NETFILTER, null), 'teach libbpf SEC("netfilter")');
  netfilterSectionKnown = true;
}

/** What netfilterLinkCreate attaches to: a hook of one protocol family, in the calling thread's network namespace. */
export interface NetfilterHook {
  /** NFPROTO_IPV4 (2) or NFPROTO_IPV6 (10). */
  pf: number;
  /** NF_INET_LOCAL_IN (1), NF_INET_POST_ROUTING (4), ... */
  hooknum: number;
  priority: number;
  /** BPF_F_NETFILTER_IP_DEFRAG (1): the program sees reassembled datagrams. */
  flags: number;
}

/** Creates a netfilter link for the program; returns its fd. */
export function netfilterLinkCreate(progFd: number, hook: NetfilterHook, what: string): number {
  if (process.arch !== 'x64') throw new Error(`netfilter links: the bpf() syscall number of ${process.arch} is not known here`);
  const attr = Buffer.alloc(LINK_CREATE_ATTR_BYTES);
  attr.writeUInt32LE(progFd, 0);
  attr.writeUInt32LE(BPF_NETFILTER, 8);
  attr.writeUInt32LE(hook.pf, 16);
  attr.writeUInt32LE(hook.hooknum, 20);
  attr.writeInt32LE(hook.priority, 24);
  attr.writeUInt32LE(hook.flags, 28);
  const fd = Number(lib().syscall(SYS_BPF_X86_64, 'int', BPF_LINK_CREATE, 'void *', attr, 'unsigned int', attr.length));
  if (fd < 0) throw new BpfError(what, koffi.errno() || osConstants.errno.EINVAL);
  return fd;
}

/** Parses an ELF BPF object held in memory (nothing reaches the kernel yet); throws on a bad object. */
export function openObjectFromMemory(bytes: Buffer, options: OpenObjectOptions): BpfObjectHandle {
  const b = lib();
  knowNetfilterSection(b);
  const opts = {
    sz: b.openOptsSize,
    object_name: options.objectName,
    relaxed_maps: false,
    pin_root_path: options.pinRootPath,
  };
  return checkPointer(b.openMem(bytes, bytes.length, opts), `open BPF object ${options.objectName}`);
}

/** Creates (or re-uses pinned) maps and loads every program into the kernel; throws on verifier rejection. */
export function loadObject(obj: BpfObjectHandle, objectName: string): void {
  check(lib().load(obj), `load BPF object ${objectName}`);
}

/** Frees the object and closes its fds (pinned objects stay in the kernel). */
export function closeObject(obj: BpfObjectHandle): void {
  lib().close(obj);
}

/** The program named `name` in the object; throws ENOENT if absent. */
export function findProgram(obj: BpfObjectHandle, name: string): BpfProgramHandle {
  return checkPointer(lib().findProgram(obj, name), `find program ${name}`);
}

/** The fd of a loaded program (owned by the object). */
export function programFd(prog: BpfProgramHandle, name: string): number {
  return check(lib().programFd(prog), `get fd of program ${name}`);
}

/** Pins a loaded program at `path`; throws EEXIST if something is pinned there. */
export function pinProgram(prog: BpfProgramHandle, name: string, path: string): void {
  check(lib().programPin(prog, path), `pin program ${name} at ${path}`);
}

/** The map named `name` in the object; throws ENOENT if absent. */
export function findMap(obj: BpfObjectHandle, name: string): BpfMapHandle {
  return checkPointer(lib().findMap(obj, name), `find map ${name}`);
}

/** A map as an opened (not necessarily loaded) object defines it. */
export interface MapDefinition {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  mapFlags: number;
}

/** Every map the object defines, as libbpf read it from the object (its .maps, and the internal .rodata/.bss ones). */
export function mapDefinitions(obj: BpfObjectHandle): MapDefinition[] {
  const b = lib();
  const out: MapDefinition[] = [];
  for (let m = b.nextMap(obj, null) as BpfMapHandle | null; m; m = b.nextMap(obj, m) as BpfMapHandle | null) {
    out.push({
      name: String(b.mapName(m)),
      type: Number(b.mapType(m)),
      keySize: Number(b.mapKeySize(m)),
      valueSize: Number(b.mapValueSize(m)),
      maxEntries: Number(b.mapMaxEntries(m)),
      mapFlags: Number(b.mapFlags(m)),
    });
  }
  return out;
}

/** bpf_map_create with no options; returns the new map's fd. */
export function mapCreate(type: number, name: string, keySize: number, valueSize: number, maxEntries: number): number {
  return check(lib().mapCreate(type, name, keySize, valueSize, maxEntries, null), `create map ${name}`);
}

/** Sets a map's max_entries in an opened object, before it is loaded; throws (e.g. EBUSY once loaded). */
export function setMapMaxEntries(obj: BpfObjectHandle, name: string, maxEntries: number): void {
  check(lib().mapSetMaxEntries(findMap(obj, name), maxEntries), `set max_entries of map ${name} to ${maxEntries}`);
}

/** The fd of a created map (owned by the object). */
export function mapFd(map: BpfMapHandle, name: string): number {
  return check(lib().mapFd(map), `get fd of map ${name}`);
}

/** Opens a pinned object (map, program, link) and returns a new fd the caller must close. */
export function objGet(path: string, what = 'object'): number {
  return check(lib().objGet(path), `open pinned ${what} at ${path}`);
}

/** Pins the object behind `fd` at `path`; throws EEXIST if the path is taken. */
export function objPin(fd: number, path: string, what = 'object'): void {
  check(lib().objPin(fd, path), `pin ${what} at ${path}`);
}

/** bpf_map_update_elem; `flags` is BPF_ANY, BPF_NOEXIST or BPF_EXIST. */
export function mapUpdateElem(fd: number, key: Buffer, value: Buffer, flags: number, what: string): void {
  check(lib().mapUpdate(fd, key, value, flags), `update ${what}`);
}

/** bpf_map_lookup_elem into `value`; false if the key is absent. */
export function mapLookupElem(fd: number, key: Buffer, value: Buffer, what: string): boolean {
  const ret = Number(lib().mapLookup(fd, key, value));
  if (ret === -osConstants.errno.ENOENT) return false;
  check(ret, `look up ${what}`);
  return true;
}

/**
 * Runs a BPF_PROG_TYPE_SYSCALL program once (BPF_PROG_TEST_RUN) with `ctx`
 * as its context; the kernel writes the context back into `ctx`. Returns the
 * program's return value.
 */
export function runSyscallProgram(fd: number, ctx: Buffer, what: string): number {
  const b = lib();
  const opts = { sz: b.testRunOptsSize, data_in: null, data_out: null, data_size_in: 0, data_size_out: 0, ctx_in: ctx, ctx_out: null, ctx_size_in: ctx.length, ctx_size_out: 0, retval: 0 };
  check(b.progTestRun(fd, opts), `run ${what}`);
  return opts.retval;
}

/** bpf_map_delete_elem; false if the key was absent. */
export function mapDeleteElem(fd: number, key: Buffer, what: string): boolean {
  const ret = Number(lib().mapDelete(fd, key));
  if (ret === -osConstants.errno.ENOENT) return false;
  check(ret, `delete ${what}`);
  return true;
}

/** bpf_map_get_next_key: writes the key after `key` (or the first when null) into `next`; false at the end. */
export function mapGetNextKey(fd: number, key: Buffer | null, next: Buffer, what: string): boolean {
  const ret = Number(lib().mapNextKey(fd, key, next));
  if (ret === -osConstants.errno.ENOENT) return false;
  check(ret, `iterate ${what}`);
  return true;
}

/** bpf_link_create with no options; returns the link fd. */
export function linkCreate(progFd: number, targetFd: number, attachType: number, what: string): number {
  return check(lib().linkCreate(progFd, targetFd, attachType, null), what);
}

/** Detaches a link from its hook (the link object lives on until its last fd/pin goes). */
export function linkDetach(linkFd: number, what: string): void {
  check(lib().linkDetach(linkFd), what);
}

/** Makes the link run another program, atomically (BPF_LINK_UPDATE); TCX links support it. */
export function linkUpdate(linkFd: number, newProgFd: number, what: string): void {
  check(lib().linkUpdate(linkFd, newProgFd, null), what);
}

/** bpf_obj_get_info_by_fd into `info` (zeroed by the caller); returns the length the kernel filled. */
export function objGetInfo(fd: number, info: Buffer, what: string): number {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  check(lib().objInfo(fd, info, len), `get info of ${what}`);
  return len.readUInt32LE();
}

/** The number of possible CPUs: the slot count of a per-CPU map value. */
export function numPossibleCpus(): number {
  return check(lib().numCpus(), 'count possible CPUs');
}

/** libc close(); ignores errors (used on cleanup paths). */
export function closeFd(fd: number): void {
  if (fd >= 0) lib().libcClose(fd);
}

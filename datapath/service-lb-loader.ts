/**
 * Loads the socket load balancer (bpf/service-lb.c: ClusterIP Services
 * translated in connect, sendmsg, recvmsg and getpeername) and attaches its
 * programs at the root of the cgroup v2 hierarchy, or adopts what a previous
 * agent left pinned, so Services keep working across agent restarts. Map
 * layouts: service-lb-abi.ts.
 *
 * Layout under pinDir (the agent's <bpf-dir>/service-lb):
 *   maps/<map name>   pinned by libbpf (LIBBPF_PIN_BY_NAME), re-used on every load
 *   progs/<program>   lb_connect4 ... lb_getpeername6
 *   links/<link>      one cgroup link per program (connect4, ..., getpeername6), on the
 *                     root of the cgroup v2 hierarchy, which every socket of the node
 *                     descends from. Unpinning a link detaches its program.
 */
import { existsSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import sea from 'node:sea';
import {
  LB_AFFINITY_KEY,
  LB_AFFINITY_VALUE,
  LB_BACKEND,
  LB_BACKEND_ID_SIZE,
  LB_FLOWS_VALUE_SIZE,
  LB_MAX_AFFINITY,
  LB_MAX_BACKENDS,
  LB_MAX_REVNAT,
  LB_MAX_SERVICE_SLOTS,
  LB_REVNAT_KEY,
  LB_REVNAT_VALUE,
  LB_SERVICE_KEY,
  LB_SERVICE_VALUE,
} from './service-lb-abi.ts';
import type { BpfMap } from './bpf-map.ts';
import { readMapInfo } from './bpf-info.ts';
import { closeFd, objGet, setMapMaxEntries } from './libbpf.ts';
import { allPinned, attachLinks, closeMaps, loadAndPin, openPinnedMaps, pinDirs, pinnedLinks, unpinLinks, type LinkSpec, type MapSpec } from './pinned-object.ts';
import { recoverResize, resizePinnedMaps, type ResizeTarget } from './service-lb-resize.ts';

const OBJECT_NAME = 'sluice_lb';

/** Name of the object among the single executable's assets. */
export const SERVICE_LB_OBJECT_ASSET = 'sluice-service-lb.bpf.o';
/** Environment variable that overrides the object's path outside a single executable. */
export const SERVICE_LB_OBJECT_ENV = 'SLUICE_SERVICE_LB_OBJECT';

/** The links: the program each runs and its enum bpf_attach_type (uapi/linux/bpf.h), each on the cgroup v2 root. */
const LINKS = [
  { name: 'connect4', program: 'lb_connect4', at: 'cgroup', attachType: 10 }, // BPF_CGROUP_INET4_CONNECT
  { name: 'connect6', program: 'lb_connect6', at: 'cgroup', attachType: 11 }, // BPF_CGROUP_INET6_CONNECT
  { name: 'sendmsg4', program: 'lb_sendmsg4', at: 'cgroup', attachType: 14 }, // BPF_CGROUP_UDP4_SENDMSG
  { name: 'sendmsg6', program: 'lb_sendmsg6', at: 'cgroup', attachType: 15 }, // BPF_CGROUP_UDP6_SENDMSG
  { name: 'recvmsg4', program: 'lb_recvmsg4', at: 'cgroup', attachType: 19 }, // BPF_CGROUP_UDP4_RECVMSG
  { name: 'recvmsg6', program: 'lb_recvmsg6', at: 'cgroup', attachType: 20 }, // BPF_CGROUP_UDP6_RECVMSG
  { name: 'getpeername4', program: 'lb_getpeername4', at: 'cgroup', attachType: 29 }, // BPF_CGROUP_INET4_GETPEERNAME
  { name: 'getpeername6', program: 'lb_getpeername6', at: 'cgroup', attachType: 30 }, // BPF_CGROUP_INET6_GETPEERNAME
] as const satisfies readonly LinkSpec[];
type ProgramName = (typeof LINKS)[number]['program'];
const PROGRAMS: ProgramName[] = LINKS.map((l) => l.program);
const LINK_NAMES = new Set<string>(LINKS.map((l) => l.name));

const MAP_SPECS = {
  lb_services: { keySize: LB_SERVICE_KEY.size, valueSize: LB_SERVICE_VALUE.size, perCpu: false },
  lb_backends: { keySize: LB_BACKEND_ID_SIZE, valueSize: LB_BACKEND.size, perCpu: false },
  lb_revnat: { keySize: LB_REVNAT_KEY.size, valueSize: LB_REVNAT_VALUE.size, perCpu: false },
  lb_backend_flows: { keySize: LB_BACKEND_ID_SIZE, valueSize: LB_FLOWS_VALUE_SIZE, perCpu: true },
  lb_affinity: { keySize: LB_AFFINITY_KEY.size, valueSize: LB_AFFINITY_VALUE.size, perCpu: false },
} satisfies Record<string, MapSpec>;

const MAP_NAMES = Object.keys(MAP_SPECS) as (keyof typeof MAP_SPECS)[];

/** The load balancer's maps, open in this process. */
export type ServiceLbMaps = Record<keyof typeof MAP_SPECS, BpfMap>;
export type ServiceLbMapName = keyof typeof MAP_SPECS;

/** Entries of the load balancer's maps (the agent's --lb-*-max flags). */
export interface LbMapSizes {
  /** lb_services: frontends plus their backend slots. */
  services: number;
  /** lb_backends, and lb_backend_flows (indexed by backend id: ids run 1..backends-1). */
  backends: number;
  /** lb_revnat (LRU): sockets × backends remembered for reverse translation. */
  revnat: number;
  /** lb_affinity (LRU): (client, frontend) pairs of sessionAffinity: ClientIP. */
  affinity: number;
}

/** The sizes bpf/service-lb.h defines. */
export const DEFAULT_LB_MAP_SIZES: Readonly<LbMapSizes> = { services: LB_MAX_SERVICE_SLOTS, backends: LB_MAX_BACKENDS, revnat: LB_MAX_REVNAT, affinity: LB_MAX_AFFINITY };

/** Which size each map takes. */
const SIZE_OF: Record<ServiceLbMapName, keyof LbMapSizes> = { lb_services: 'services', lb_backends: 'backends', lb_backend_flows: 'backends', lb_revnat: 'revnat', lb_affinity: 'affinity' };

/** A loaded (or adopted) socket load balancer. */
export interface ServiceLb {
  /** True if the pinned programs and maps of a previous load were re-used as they were. */
  adopted: boolean;
  maps: ServiceLbMaps;
  /** Links attached by this load. */
  attached: string[];
  /** The links pinned (attached) now. */
  links: string[];
  /** Each map's max_entries as the kernel has it now. */
  sizes: Record<ServiceLbMapName, number>;
  /** Pinned maps resized to the wanted sizes by this load ("lb_services 65536 → 1024"). */
  resized: string[];
  /** Why pinned maps of other sizes were kept (then sizes shows what they are), or null. */
  resizeRefused: string | null;
  /** Closes this process's map fds; everything pinned stays in the kernel. */
  close(): void;
}

/** Options for loadServiceLb. */
export interface LoadServiceLbOptions {
  /** A directory on bpffs, e.g. /sys/fs/bpf/sluice/service-lb. */
  pinDir: string;
  /** The compiled object (see serviceLbObjectBytes()). */
  objectBytes: Buffer;
  /** The root of the cgroup v2 hierarchy (trace-loader's cgroup2Root()). */
  cgroupRoot: string;
  /** Map sizes (default: bpf/service-lb.h's); pinned maps of other sizes are resized (service-lb-resize.ts). */
  sizes?: LbMapSizes;
  /** False: the maps only, for the datapath's per-packet translation (--socket-lb off); links pinned before are removed (default true). */
  attach?: boolean;
}

/** The bytes of the object: an asset of the single executable, else dist/ (or $SLUICE_SERVICE_LB_OBJECT). */
export function serviceLbObjectBytes(): Buffer {
  if (sea.isSea()) return Buffer.from(sea.getAsset(SERVICE_LB_OBJECT_ASSET));
  return readFileSync(process.env[SERVICE_LB_OBJECT_ENV] || join(import.meta.dirname, '..', 'dist', SERVICE_LB_OBJECT_ASSET));
}

/**
 * Adopts the pinned load balancer under pinDir if it is complete, else loads
 * objectBytes (re-using any maps already pinned, so the Services stay) and
 * pins its programs; then attaches every link that is not pinned yet. Throws
 * BpfError on a kernel or libbpf failure, or when a hook cannot be attached
 * (a cgroup root that is no cgroup v2 directory): Services would half work.
 */
export function loadServiceLb(options: LoadServiceLbOptions): ServiceLb {
  const dirs = pinDirs(options.pinDir);
  const sizes = options.sizes ?? DEFAULT_LB_MAP_SIZES;
  const resizeTarget: ResizeTarget = {
    pinDir: options.pinDir,
    maps: MAP_NAMES,
    links: LINKS,
    loadInto: (toMaps, toProgs) => loadAt(options.objectBytes, toMaps, (name) => join(toProgs, name), sizes),
  };
  // An interrupted resize is finished (or discarded) before the pins are looked at.
  recoverResize(resizeTarget);
  const { mapsDir, linksDir } = dirs;
  const adopted = allPinned(dirs, PROGRAMS, MAP_NAMES);
  const resized: string[] = [];
  let resizeRefused: string | null = null;
  if (!adopted) {
    // An incomplete set: maps of other sizes cannot be re-used by libbpf; they start afresh.
    for (const [name, size] of pinnedSizes(mapsDir)) if (size !== sizes[SIZE_OF[name]]) unlinkSync(join(mapsDir, name));
    loadAt(options.objectBytes, mapsDir, dirs.progPath, sizes);
    // Links of older programs are replaced by links of the new ones.
    unpinLinks(linksDir);
  } else {
    const differ = [...pinnedSizes(mapsDir)].filter(([name, size]) => size !== sizes[SIZE_OF[name]]);
    if (differ.length > 0) {
      resizeRefused = resizePinnedMaps(resizeTarget);
      if (resizeRefused === null) resized.push(...differ.map(([name, size]) => `${name} ${size} → ${sizes[SIZE_OF[name]]}`));
    }
  }
  // Unpinning the links detaches their programs: without attach the socket hooks are off (pins
  // under links/ that are none of LINKS are left as they are). A hook that cannot be attached throws.
  if (options.attach === false) unpinLinks(linksDir, (pin) => LINK_NAMES.has(pin));
  const attached = options.attach === false ? [] : attachLinks({ dirs, links: LINKS, cgroupRoot: options.cgroupRoot }).attached;
  const maps = openPinnedMaps(mapsDir, MAP_SPECS);
  return {
    adopted,
    maps,
    attached,
    links: pinnedLinks(linksDir),
    sizes: Object.fromEntries(MAP_NAMES.map((name) => [name, readMapInfo(maps[name].fd, `map ${name}`).maxEntries])) as Record<ServiceLbMapName, number>,
    resized,
    resizeRefused,
    close: () => closeMaps(maps),
  };
}

/** Detaches every program (unpins the links) and removes the pins under pinDir: Services stop being translated. */
export function removeServiceLb(pinDir: string): void {
  rmSync(pinDir, { recursive: true, force: true });
}

/** max_entries of each map pinned under mapsDir. */
function pinnedSizes(mapsDir: string): Map<ServiceLbMapName, number> {
  const out = new Map<ServiceLbMapName, number>();
  for (const name of MAP_NAMES) {
    if (!existsSync(join(mapsDir, name))) continue;
    const fd = objGet(join(mapsDir, name), `map ${name}`);
    try {
      out.set(name, readMapInfo(fd, `map ${name}`).maxEntries);
    } finally {
      closeFd(fd);
    }
  }
  return out;
}

/** Loads the object with its maps at the sizes given, pinned under mapsDir (those there re-used), its programs where progPath says. */
function loadAt(objectBytes: Buffer, mapsDir: string, progPath: (name: string) => string, sizes: LbMapSizes): void {
  loadAndPin({
    objectBytes,
    objectName: OBJECT_NAME,
    mapsDir,
    programs: PROGRAMS,
    progPath,
    beforeLoad: (obj) => {
      for (const name of MAP_NAMES) setMapMaxEntries(obj, name, sizes[SIZE_OF[name]]);
    },
  });
}

/**
 * What the kernel says about a BPF object behind an fd (BPF_OBJ_GET_INFO_BY_FD):
 * struct bpf_map_info and struct bpf_link_info of linux/bpf.h, decoded here
 * once for every caller (the pinned-map check, the map fill metrics, the TCX
 * and netfilter link state).
 */
import { objGetInfo, type NetfilterHook } from './libbpf.ts';

/** Room for struct bpf_map_info (80 bytes on Linux 6.x); the kernel fills what it has, the rest stays zero. */
const MAP_INFO_BYTES = 96;
/** struct bpf_map_info: the leading fields we read. */
const MAP_INFO = { type: 0, id: 4, key_size: 8, value_size: 12, max_entries: 16, map_flags: 20 } as const;

/** Room for struct bpf_link_info; as for maps, a larger zeroed buffer is accepted. */
const LINK_INFO_BYTES = 128;
/** struct bpf_link_info: type, id, prog_id, then (8-aligned) the union of per-type fields. */
const LINK_INFO = { type: 0, id: 4, prog_id: 8, union: 16 } as const;
/** The union's tcx { ifindex, attach_type }. */
const LINK_INFO_TCX = { ifindex: 0, attach_type: 4 } as const;
/** The union's netfilter { pf, hooknum, priority, flags }. */
const LINK_INFO_NETFILTER = { pf: 0, hooknum: 4, priority: 8, flags: 12 } as const;

/** enum bpf_link_type of a netfilter link. */
export const BPF_LINK_TYPE_NETFILTER = 10;
/** enum bpf_link_type of a TCX link. */
export const BPF_LINK_TYPE_TCX = 11;

/** A map as the kernel describes it. */
export interface MapInfo {
  /** enum bpf_map_type. */
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  mapFlags: number;
}

/** A link as the kernel describes it; the per-type part only for the types Sluice makes. */
export interface LinkInfo {
  /** enum bpf_link_type. */
  type: number;
  id: number;
  progId: number;
  /** For BPF_LINK_TYPE_TCX: the device (0 once it is gone) and the attach type. */
  tcx?: { ifindex: number; attachType: number };
  /** For BPF_LINK_TYPE_NETFILTER: the hook. */
  netfilter?: NetfilterHook;
}

/** Reads struct bpf_map_info of the map behind `fd`; throws BpfError "get info of `what`: CODE". */
export function readMapInfo(fd: number, what: string): MapInfo {
  const info = Buffer.alloc(MAP_INFO_BYTES);
  objGetInfo(fd, info, what);
  return {
    type: info.readUInt32LE(MAP_INFO.type),
    id: info.readUInt32LE(MAP_INFO.id),
    keySize: info.readUInt32LE(MAP_INFO.key_size),
    valueSize: info.readUInt32LE(MAP_INFO.value_size),
    maxEntries: info.readUInt32LE(MAP_INFO.max_entries),
    mapFlags: info.readUInt32LE(MAP_INFO.map_flags),
  };
}

/** Reads struct bpf_link_info of the link behind `fd`; throws BpfError "get info of `what`: CODE". */
export function readLinkInfo(fd: number, what: string): LinkInfo {
  const info = Buffer.alloc(LINK_INFO_BYTES);
  objGetInfo(fd, info, what);
  const link: LinkInfo = {
    type: info.readUInt32LE(LINK_INFO.type),
    id: info.readUInt32LE(LINK_INFO.id),
    progId: info.readUInt32LE(LINK_INFO.prog_id),
  };
  const at = LINK_INFO.union;
  if (link.type === BPF_LINK_TYPE_TCX) {
    link.tcx = { ifindex: info.readUInt32LE(at + LINK_INFO_TCX.ifindex), attachType: info.readUInt32LE(at + LINK_INFO_TCX.attach_type) };
  } else if (link.type === BPF_LINK_TYPE_NETFILTER) {
    link.netfilter = {
      pf: info.readUInt32LE(at + LINK_INFO_NETFILTER.pf),
      hooknum: info.readUInt32LE(at + LINK_INFO_NETFILTER.hooknum),
      priority: info.readInt32LE(at + LINK_INFO_NETFILTER.priority),
      flags: info.readUInt32LE(at + LINK_INFO_NETFILTER.flags),
    };
  }
  return link;
}

/** Room for struct bpf_prog_info's leading fields (type, id, tag...). */
const PROG_INFO_BYTES = 256;

/** The id of the program behind `fd` (struct bpf_prog_info.id). */
export function readProgramId(fd: number, what: string): number {
  const info = Buffer.alloc(PROG_INFO_BYTES);
  objGetInfo(fd, info, what);
  return info.readUInt32LE(4);
}

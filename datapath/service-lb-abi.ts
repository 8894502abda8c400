/**
 * The TypeScript mirror of bpf/service-lb.h, the socket load balancer's
 * kernel ABI: map keys and values, their limits, and their encoders.
 * test/service-lb-abi.test.ts compares the layouts here with the BTF of the
 * object as the Makefile builds it. Integers are in host order except ports,
 * which the maps hold in network order (as struct bpf_sock_addr does).
 */
import type { StructLayout } from './abi.ts';
import { formatIp, parseIp } from '../lib/ip-bytes.ts';
import { Protocol } from '../lib/protocols.ts';

/** enum sluice_lb_limits. */
export const LB_MAX_SERVICE_SLOTS = 65536;
export const LB_MAX_BACKENDS = 65536;
export const LB_MAX_REVNAT = 262144;
export const LB_MAX_SLOTS_PER_SERVICE = 4096;
export const LB_MAX_AFFINITY = 65536;

/** enum sluice_lb_service_flags (slot 0's flags). */
export const LbServiceFlags = { AFFINITY: 1 } as const;

/** enum sluice_lb_family. */
export const LbFamily = { V4: 4, V6: 6 } as const;

export const LB_SERVICE_KEY: StructLayout = { name: 'lb_service_key', size: 24, members: { addr: 0, port: 16, protocol: 18, family: 19, slot: 20, pad: 22 } };
export const LB_SERVICE_VALUE: StructLayout = { name: 'lb_service_value', size: 12, members: { backend_id: 0, count: 4, flags: 6, affinity_timeout_sec: 8 } };
export const LB_AFFINITY_KEY: StructLayout = { name: 'lb_affinity_key', size: 32, members: { netns_cookie: 0, addr: 8, port: 24, protocol: 26, family: 27, pad: 28 } };
export const LB_AFFINITY_VALUE: StructLayout = { name: 'lb_affinity_value', size: 16, members: { last_used_ns: 0, backend_id: 8, pad: 12 } };
export const LB_BACKEND: StructLayout = { name: 'lb_backend', size: 20, members: { addr: 0, port: 16, family: 18, protocol: 19 } };
export const LB_REVNAT_KEY: StructLayout = { name: 'lb_revnat_key', size: 32, members: { cookie: 0, addr: 8, port: 24, family: 26, pad: 27 } };
export const LB_REVNAT_VALUE: StructLayout = { name: 'lb_revnat_value', size: 20, members: { addr: 0, port: 16, family: 18, pad: 19 } };
/** lb_backends' and lb_backend_flows' key: a backend id (__u32); lb_backend_flows' value: __u64 per CPU. */
export const LB_BACKEND_ID_SIZE = 4;
export const LB_FLOWS_VALUE_SIZE = 8;

/** The protocols a frontend may have: the socket hooks see TCP and UDP. */
export type LbProtocol = 'TCP' | 'UDP';
const PROTOCOL_NUMBERS: Record<LbProtocol, number> = { TCP: Protocol.TCP, UDP: Protocol.UDP };

/** An address + port as the maps hold them. */
export interface LbAddress {
  address: string;
  port: number;
}

function writeAddr(buf: Buffer, offset: number, address: string): number {
  const ip = parseIp(address);
  Buffer.from(ip.bytes).copy(buf, offset);
  return ip.family === 4 ? LbFamily.V4 : LbFamily.V6;
}

function readAddr(buf: Buffer, offset: number, family: number): string {
  return formatIp(buf.subarray(offset, offset + (family === LbFamily.V4 ? 4 : 16)));
}

/** The lb_services key of a frontend's slot (0: the frontend itself). */
export function encodeServiceKey(frontend: LbAddress & { protocol: LbProtocol }, slot: number): Buffer {
  const m = LB_SERVICE_KEY.members;
  const key = Buffer.alloc(LB_SERVICE_KEY.size);
  key.writeUInt8(writeAddr(key, m.addr!, frontend.address), m.family!);
  key.writeUInt16BE(frontend.port, m.port!);
  key.writeUInt8(PROTOCOL_NUMBERS[frontend.protocol], m.protocol!);
  key.writeUInt16LE(slot, m.slot!);
  return key;
}

/** A decoded lb_services key. */
export function decodeServiceKey(key: Buffer): LbAddress & { protocol: LbProtocol | number; slot: number } {
  const m = LB_SERVICE_KEY.members;
  return { address: readAddr(key, m.addr!, key.readUInt8(m.family!)), port: key.readUInt16BE(m.port!), protocol: protocolOf(key.readUInt8(m.protocol!)), slot: key.readUInt16LE(m.slot!) };
}

/** Slot 0's value: the number of backend slots, and with a timeout, sessionAffinity: ClientIP. */
export function encodeServiceHead(count: number, affinityTimeoutSec?: number): Buffer {
  const m = LB_SERVICE_VALUE.members;
  const v = Buffer.alloc(LB_SERVICE_VALUE.size);
  v.writeUInt16LE(count, m.count!);
  if (affinityTimeoutSec !== undefined) {
    v.writeUInt16LE(LbServiceFlags.AFFINITY, m.flags!);
    v.writeUInt32LE(affinityTimeoutSec, m.affinity_timeout_sec!);
  }
  return v;
}

/** A backend slot's value: the backend's id. */
export function encodeServiceSlot(backendId: number): Buffer {
  const v = Buffer.alloc(LB_SERVICE_VALUE.size);
  v.writeUInt32LE(backendId, LB_SERVICE_VALUE.members.backend_id!);
  return v;
}

/** A decoded lb_services value (affinityTimeoutSec: 0 without affinity). */
export function decodeServiceValue(v: Buffer): { backendId: number; count: number; affinityTimeoutSec: number } {
  const m = LB_SERVICE_VALUE.members;
  const affinity = (v.readUInt16LE(m.flags!) & LbServiceFlags.AFFINITY) !== 0;
  return { backendId: v.readUInt32LE(m.backend_id!), count: v.readUInt16LE(m.count!), affinityTimeoutSec: affinity ? v.readUInt32LE(m.affinity_timeout_sec!) : 0 };
}

/** The backend id an lb_affinity value holds. */
export function decodeAffinityBackend(v: Buffer): number {
  return v.readUInt32LE(LB_AFFINITY_VALUE.members.backend_id!);
}

/** An lb_backends key (and lb_backend_flows index). */
export function encodeBackendId(id: number): Buffer {
  const key = Buffer.alloc(LB_BACKEND_ID_SIZE);
  key.writeUInt32LE(id);
  return key;
}

/** An lb_backends value. */
export function encodeBackend(backend: LbAddress & { protocol: LbProtocol }): Buffer {
  const m = LB_BACKEND.members;
  const v = Buffer.alloc(LB_BACKEND.size);
  v.writeUInt8(writeAddr(v, m.addr!, backend.address), m.family!);
  v.writeUInt16BE(backend.port, m.port!);
  v.writeUInt8(PROTOCOL_NUMBERS[backend.protocol], m.protocol!);
  return v;
}

/** A decoded lb_backends value. */
export function decodeBackend(v: Buffer): LbAddress & { protocol: LbProtocol | number } {
  const m = LB_BACKEND.members;
  return { address: readAddr(v, m.addr!, v.readUInt8(m.family!)), port: v.readUInt16BE(m.port!), protocol: protocolOf(v.readUInt8(m.protocol!)) };
}

function protocolOf(number: number): LbProtocol | number {
  return number === Protocol.TCP ? 'TCP' : number === Protocol.UDP ? 'UDP' : number;
}

/** A decoded lb_revnat entry: a socket, the backend it reached and the frontend it asked for. */
export function decodeRevnat(key: Buffer, value: Buffer): { cookie: bigint; backend: LbAddress; frontend: LbAddress } {
  const k = LB_REVNAT_KEY.members;
  const v = LB_REVNAT_VALUE.members;
  return {
    cookie: key.readBigUInt64LE(k.cookie!),
    backend: { address: readAddr(key, k.addr!, key.readUInt8(k.family!)), port: key.readUInt16BE(k.port!) },
    frontend: { address: readAddr(value, v.addr!, value.readUInt8(v.family!)), port: value.readUInt16BE(v.port!) },
  };
}

/** The sum of the per-CPU values of one lb_backend_flows slot. */
export function sumBackendFlows(slots: Buffer[]): number {
  return slots.reduce((sum, slot) => sum + Number(slot.readBigUInt64LE(0)), 0);
}

/**
 * Turns a datapath event into a flow record (contract/flows.ts): names both
 * ends (pod, namespace, labels, or what the address is), the device, the
 * Service frontend, and carries the L7 summary and the policies the caller
 * found. Pure: every lookup comes through FlowNaming.
 */
import { EventType, type DatapathEvent } from '../../datapath/abi.ts';
import type { FlowEndpoint, FlowPolicyRef, FlowRecord, L7Summary } from '../../contract/flows.ts';
import { Identity } from '../../lib/identity-numbers.ts';
import { Protocol, hasPorts } from '../../lib/protocols.ts';
import { eventBasics, type MonitorPeer, type Resolver } from '../monitor.ts';

/** What a record needs named beyond the monitor's resolver. */
export interface FlowNaming extends Resolver {
  labelsOf(namespace: string, pod: string): Record<string, string> | undefined;
  /** The name of a device of this node, by index. */
  interfaceName(ifindex: number): string | undefined;
  /** "namespace/name" of the Service with this frontend, when the agent knows it. */
  serviceAt?(ip: string, port: number, protocol: string): string | undefined;
}

const TCP_FLAG_NAMES = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'] as const;

/** The names of the flags set in a TCP flags byte, lowest bit first. */
export function tcpFlagNames(flags: number): string[] {
  return TCP_FLAG_NAMES.filter((_, bit) => flags & (1 << bit));
}

/** tcpFlagNames of every flags byte, made once: records share them (never change a record's tcpFlags). */
const FLAG_NAMES_BY_BYTE: readonly string[][] = Array.from({ length: 256 }, (_, flags) => tcpFlagNames(flags));

/** The interface of recent records, one object per device: records share them (never change a record's interface). */
const interfaces = new Map<number, FlowRecord['interface']>();
const INTERFACE_CACHE_ENTRIES = 4096;

function interfaceOf(index: number, name: string | undefined): FlowRecord['interface'] {
  const cached = interfaces.get(index);
  if (cached && cached.name === name) return cached;
  if (interfaces.size >= INTERFACE_CACHE_ENTRIES) interfaces.clear();
  const made = name ? { index, name } : { index };
  interfaces.set(index, made);
  return made;
}

/** Protocols named in records whose ends have ports. */
const NAMES_WITH_PORTS: ReadonlySet<string> = new Set(
  Object.entries(Protocol)
    .filter(([, n]) => hasPorts(n))
    .map(([name]) => name),
);

/** The one-line summary of a record, from its fields alone. */
export function summaryOf(r: FlowRecord): string {
  const ports = NAMES_WITH_PORTS.has(r.protocol);
  const end = (p: FlowEndpoint) => (ports ? `${p.name}:${p.port}` : p.name);
  const flags = r.tcpFlags && r.tcpFlags.length > 0 ? ` [${r.tcpFlags.join(',')}]` : '';
  const why = r.type === 'l7' ? l7Text(r.l7) : `${r.verdict}${r.direction ? ` ${r.direction}` : ''} (${r.reason})`;
  const by = r.policies && r.policies.length > 0 ? ` by ${r.policies.map((p) => `${p.namespace}/${p.name}${p.rule === undefined ? '' : `#${p.rule}`}`).join(', ')}` : '';
  return `${end(r.source)} -> ${end(r.destination)} ${r.protocol}${flags} ${why}${by}`;
}

/** Writes the record's summary line if it has none yet; returns the record. */
export function ensureSummary(r: FlowRecord): FlowRecord {
  if (r.summary === '') r.summary = summaryOf(r);
  return r;
}

function endpointOf(peer: MonitorPeer, naming: FlowNaming): FlowEndpoint {
  const out: FlowEndpoint = { ip: peer.ip, port: peer.port, identity: peer.identity, name: peer.name };
  if (peer.namespace && peer.pod) {
    out.namespace = peer.namespace;
    out.pod = peer.pod;
    const labels = naming.labelsOf(peer.namespace, peer.pod);
    if (labels) out.labels = labels;
  }
  return out;
}

/** What an L7 message says in a few words. */
function l7Text(l7: L7Summary | undefined): string {
  if (!l7) return 'L7 message';
  const latency = l7.latencyMs === undefined ? '' : ` ${l7.latencyMs.toFixed(1)}ms`;
  if (l7.dns) {
    const q = `${l7.dns.qtype} ${l7.dns.query}`;
    return l7.kind === 'request' ? `DNS query ${q}` : `DNS answer ${q} ${l7.dns.rcode ?? ''}${latency}`.trimEnd();
  }
  if (l7.http) {
    const req = [l7.http.method, l7.http.path].filter(Boolean).join(' ');
    return l7.kind === 'request' ? `HTTP ${req}` : `HTTP ${l7.http.status ?? '?'} ${req}${latency}`.trimEnd();
  }
  return l7.type;
}

/**
 * The record of one event. l7 is the parsed message of an L7 event (the
 * caller parses and pairs them); policiesOf names the verdict's policies.
 */
export function flowRecordOf(
  e: DatapathEvent,
  naming: FlowNaming,
  bootOffsetMs: number,
  l7?: L7Summary,
  policiesOf?: (r: FlowRecord) => FlowPolicyRef[] | undefined,
): FlowRecord {
  const m = eventBasics(e, naming, bootOffsetMs);
  const type: FlowRecord['type'] = e.type === EventType.L7 ? 'l7' : e.type === EventType.DROP ? 'drop' : 'flow';
  const source = endpointOf(m.src, naming);
  const destination = endpointOf(m.dst, naming);
  const iface = interfaceOf(e.ifindex, naming.interfaceName(e.ifindex));
  const record: FlowRecord = {
    time: m.time,
    type,
    verdict: m.verdict,
    reason: type === 'l7' ? l7?.type ?? 'l7' : m.direction || m.verdict !== 'ALLOWED' ? m.reason : 'no policy',
    source,
    destination,
    protocol: m.protocol,
    direction: type === 'l7' ? '' : m.direction,
    isReply: type === 'l7' ? l7?.kind === 'response' : e.isReply,
    interface: iface,
    bytes: e.len,
    summary: '',
  };
  if (m.verdict !== 'ALLOWED') record.dropReason = m.counter;
  if (e.protocol === 6) record.tcpFlags = FLAG_NAMES_BY_BYTE[e.tcpFlags & 0xff]!;
  if (destination.identity === Identity.SERVICE && hasPorts(e.protocol)) {
    const service = naming.serviceAt?.(destination.ip, destination.port, m.protocol);
    record.service = { ip: destination.ip, port: destination.port, ...(service ? { name: service } : {}) };
  }
  if (l7) record.l7 = l7;
  const policies = policiesOf?.(record);
  if (policies && policies.length > 0) record.policies = policies;
  // The summary line is written when the record leaves the agent (ensureSummary): most records are
  // never read, and a kept record's text was a third of its cost (memory kept until the ring moves on).
  return record;
}

/**
 * DNS messages the datapath hands up (the UDP payload of a port-53 packet, at
 * most its first 256 bytes) as flow-record summaries.
 *
 * dns-packet does the decoding. It throws on a message cut short, so a cut
 * message is decoded again with the header's counts lowered to the sections
 * that survived: first without the authority and additional sections (where
 * a cut usually falls: EDNS OPT, the SOA of an NXDOMAIN), then with as many
 * answers as still decode. The header and the question come first, so a
 * response cut anywhere after its question keeps its id, name, type and rcode.
 */
import { decode, type Answer, type DecodedPacket } from 'dns-packet';
import type { DnsSummary, L7Summary } from '../../contract/flows.ts';

const HEADER_BYTES = 12;
/** The smallest resource record: a root name (1), type, class, TTL and an empty rdata length (10). */
const MIN_RECORD_BYTES = 11;
/** The smallest question: a root name (1), type and class. */
const MIN_QUESTION_BYTES = 5;
const QR_BIT = 0x80; // in the third header byte

/** RCODE names (RFC 6895 registry); EDNS extends the 4 header bits with 8 more from the OPT record. */
const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR',
  1: 'FORMERR',
  2: 'SERVFAIL',
  3: 'NXDOMAIN',
  4: 'NOTIMP',
  5: 'REFUSED',
  6: 'YXDOMAIN',
  7: 'YXRRSET',
  8: 'NXRRSET',
  9: 'NOTAUTH',
  10: 'NOTZONE',
  11: 'DSOTYPENI',
  16: 'BADVERS',
  23: 'BADCOOKIE',
};

/** Types dns-packet does not name (it says UNKNOWN_65); browsers and stub resolvers ask for HTTPS constantly. */
const EXTRA_TYPE_NAMES: Record<number, string> = { 64: 'SVCB', 65: 'HTTPS' };

/** A parsed DNS message: its summary, and whether it is a query (request) or a response. */
export interface DnsMessage {
  kind: L7Summary['kind'];
  dns: DnsSummary;
}

/** The name of an RCODE: NOERROR, NXDOMAIN, ...; RCODEn for an unassigned one. */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}

/**
 * Parses a DNS message (a UDP payload, possibly cut). Returns null for what
 * is not one: shorter than a header, a query without a question, or a
 * question that does not decode. Never throws.
 */
export function parseDns(payload: Buffer): DnsMessage | null {
  if (payload.length < HEADER_BYTES) return null;
  const isResponse = (payload[2]! & QR_BIT) !== 0;
  const questions = payload.readUInt16BE(4);
  // A query asks something; a response may omit the question (FORMERR, some REFUSED), the query it answers has it.
  if (questions === 0 && !isResponse) return null;

  const decoded = decodeWhatSurvives(payload);
  if (decoded === null) return null;
  const { packet, truncated } = decoded;

  const question = packet.questions?.[0];
  const dns: DnsSummary = {
    id: payload.readUInt16BE(0),
    query: question?.name ?? '',
    qtype: question === undefined ? '' : typeName(question.type),
  };
  if (isResponse) {
    dns.rcode = rcodeName(fullRcode(payload, packet.additionals ?? []));
    dns.answers = answerData(packet.answers ?? []);
  }
  if (truncated) dns.truncated = true;
  return { kind: isResponse ? 'response' : 'request', dns };
}

/** The message decoded whole, or (cut) its leading sections that decode; null when not even the header and question do. */
function decodeWhatSurvives(payload: Buffer): { packet: DecodedPacket; truncated: boolean } | null {
  const questions = payload.readUInt16BE(4);
  const answers = payload.readUInt16BE(6);
  const whole = tryDecode(payload, questions, answers, payload.readUInt16BE(8), payload.readUInt16BE(10));
  if (whole !== null) return { packet: whole, truncated: false };

  const withoutTail = tryDecode(payload, questions, answers, 0, 0);
  if (withoutTail !== null) return { packet: withoutTail, truncated: true };

  let best = tryDecode(payload, questions, 0, 0, 0);
  if (best === null) {
    // A cut second question (almost never sent), or a count that lies: keep the first.
    const first = questions > 1 ? tryDecode(payload, 1, 0, 0, 0) : null;
    return first === null ? null : { packet: first, truncated: true };
  }
  // Binary search the number of answers that decode (k decode iff the first k are intact), within what the bytes can hold.
  let lo = 0; // decodes
  let hi = Math.min(answers, Math.floor(payload.length / MIN_RECORD_BYTES)) + 1; // does not
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    const packet = tryDecode(payload, questions, mid, 0, 0);
    if (packet === null) hi = mid;
    else {
      lo = mid;
      best = packet;
    }
  }
  return { packet: best, truncated: true };
}

/**
 * dns-packet's decode of the message with these section counts; null when it fails. Counts the bytes
 * cannot hold fail without decoding: dns-packet allocates an array per count, and 4 x 65535 slots per
 * garbage packet is a cost an attacker would choose.
 */
function tryDecode(payload: Buffer, questions: number, answers: number, authorities: number, additionals: number): DecodedPacket | null {
  if (questions * MIN_QUESTION_BYTES + (answers + authorities + additionals) * MIN_RECORD_BYTES > payload.length - HEADER_BYTES) return null;
  let buf = payload;
  if (questions !== payload.readUInt16BE(4) || answers !== payload.readUInt16BE(6) || authorities !== payload.readUInt16BE(8) || additionals !== payload.readUInt16BE(10)) {
    buf = Buffer.from(payload);
    buf.writeUInt16BE(questions, 4);
    buf.writeUInt16BE(answers, 6);
    buf.writeUInt16BE(authorities, 8);
    buf.writeUInt16BE(additionals, 10);
  }
  try {
    const packet = decode(buf);
    // dns-packet reads a cut A or AAAA record past the end without throwing ("10.0.undefined.undefined"):
    // a decode that ended beyond the bytes is a cut one.
    return decode.bytes <= buf.length ? packet : null;
  } catch {
    return null;
  }
}

function typeName(name: string): string {
  if (!name.startsWith('UNKNOWN_')) return name;
  const code = Number(name.slice('UNKNOWN_'.length));
  return EXTRA_TYPE_NAMES[code] ?? `TYPE${code}`; // RFC 3597's name for a type without one
}

/** The header's 4 RCODE bits, extended by an EDNS OPT record's upper 8 when there is one. */
function fullRcode(payload: Buffer, additionals: Answer[]): number {
  const low = payload[3]! & 0x0f;
  const opt = additionals.find((a) => a.type === 'OPT');
  return opt !== undefined && opt.type === 'OPT' ? (opt.extendedRcode << 4) | low : low;
}

/** The addresses (A, AAAA) and names (CNAME) a response answers with, in order. */
function answerData(answers: Answer[]): string[] {
  const out: string[] = [];
  for (const a of answers) {
    if ((a.type === 'A' || a.type === 'AAAA' || a.type === 'CNAME') && typeof a.data === 'string') out.push(a.data);
  }
  return out;
}

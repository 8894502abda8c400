// Netlink attribute (TLV) encoding and decoding: struct nlattr { u16 len; u16 type; } + payload,
// each attribute padded to 4 bytes. Pure functions, no I/O; host byte order (netlink uses it).

/** Alignment of netlink attributes and messages, in bytes (NLA_ALIGNTO). */
export const NLA_ALIGN_BYTES = 4;
/** Size of struct nlattr, in bytes (NLA_HDRLEN). */
export const NLA_HEADER_BYTES = 4;
/** Flag bit marking a nested attribute (NLA_F_NESTED); masked off when decoding. */
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

/** Rounds a length up to the netlink alignment. */
export function nlAlign(length: number): number {
  return (length + NLA_ALIGN_BYTES - 1) & ~(NLA_ALIGN_BYTES - 1);
}

/** Encodes one attribute: header, payload (parts concatenated), zero padding to 4 bytes. */
export function nlattr(type: number, payload: Uint8Array | readonly Uint8Array[]): Buffer {
  const parts = payload instanceof Uint8Array ? [payload] : payload;
  let payloadBytes = 0;
  for (const p of parts) payloadBytes += p.length;
  const length = NLA_HEADER_BYTES + payloadBytes;
  const out = Buffer.alloc(nlAlign(length));
  out.writeUInt16LE(length, 0);
  out.writeUInt16LE(type, 2);
  let offset = NLA_HEADER_BYTES;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Encodes a u32 attribute. */
export function nlattrU32(type: number, value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0, 0);
  return nlattr(type, b);
}

/** Encodes a NUL-terminated string attribute. */
export function nlattrString(type: number, value: string): Buffer {
  return nlattr(type, Buffer.from(`${value}\0`, 'utf8'));
}

/** Encodes an attribute whose payload is the given (already encoded, aligned) attributes. */
export function nlattrNested(type: number, children: readonly Uint8Array[]): Buffer {
  return nlattr(type, children);
}

/** Decodes a stream of attributes into type → payload (type with flag bits masked; last one wins). */
export function parseNlattrs(buf: Buffer, offset = 0): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  let pos = offset;
  while (pos + NLA_HEADER_BYTES <= buf.length) {
    const length = buf.readUInt16LE(pos);
    if (length < NLA_HEADER_BYTES || pos + length > buf.length) break; // truncated: stop, keep what we have
    attrs.set(buf.readUInt16LE(pos + 2) & NLA_TYPE_MASK, buf.subarray(pos + NLA_HEADER_BYTES, pos + length));
    pos += nlAlign(length);
  }
  return attrs;
}

/** Reads a NUL-terminated string attribute payload. */
export function nlString(payload: Buffer): string {
  const end = payload.indexOf(0);
  return payload.toString('utf8', 0, end === -1 ? payload.length : end);
}

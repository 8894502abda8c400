// IP address text <-> network-order bytes, as netlink carries them. Pure functions, no I/O.
import { isIPv4, isIPv6 } from 'node:net';

/** Address family number for IPv4 (AF_INET). */
export const AF_INET = 2;
/** Address family number for IPv6 (AF_INET6). */
export const AF_INET6 = 10;

/** An IP address family as a plain version number. */
export type IpFamily = 4 | 6;

/** A parsed address: its family and network-order bytes (4 or 16). */
export interface IpBytes {
  family: IpFamily;
  bytes: Buffer;
}

/** A parsed prefix; `default` is 0.0.0.0/0 or ::/0. */
export interface IpPrefix extends IpBytes {
  prefixLength: number;
}

/** Returns the AF_* number for a family. */
export function afOf(family: IpFamily): number {
  return family === 4 ? AF_INET : AF_INET6;
}

/** Parses '10.1.2.3' or 'fd00::1' into bytes; throws TypeError on anything else. */
export function parseIp(text: string): IpBytes {
  if (isIPv4(text)) return { family: 4, bytes: Buffer.from(text.split('.').map(Number)) };
  if (!isIPv6(text)) throw new TypeError(`not an IP address: ${JSON.stringify(text)}`);
  let s = text.split('%')[0] ?? text; // drop a zone id
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4Tail?.[1] !== undefined) {
    const [a = 0, b = 0, c = 0, d = 0] = v4Tail[1].split('.').map(Number);
    s = `${s.slice(0, -v4Tail[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = s.split('::');
  const words = (part: string): number[] => (part === '' ? [] : part.split(':').map((w) => parseInt(w, 16)));
  const left = words(head);
  const right = rest === undefined ? [] : words(rest);
  const zeros = new Array<number>(8 - left.length - right.length).fill(0);
  const all = [...left, ...zeros, ...right];
  const bytes = Buffer.alloc(16);
  all.forEach((w, i) => bytes.writeUInt16BE(w, i * 2));
  return { family: 6, bytes };
}

/** Formats 4 or 16 network-order bytes as text (IPv6 in RFC 5952 canonical form). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new TypeError(`IP address must be 4 or 16 bytes, got ${bytes.length}`);
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // the longest run of at least two zero words becomes '::' (first one on ties)
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart === -1) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** Parses '10.1.2.3/32', 'fd00::/64', a bare address (full-length prefix) or 'default' (needs family). */
export function parsePrefix(text: string, defaultFamily: IpFamily = 4): IpPrefix {
  if (text === 'default') {
    return { family: defaultFamily, bytes: Buffer.alloc(defaultFamily === 4 ? 4 : 16), prefixLength: 0 };
  }
  const slash = text.indexOf('/');
  const ip = parseIp(slash === -1 ? text : text.slice(0, slash));
  const max = ip.family === 4 ? 32 : 128;
  const prefixLength = slash === -1 ? max : Number(text.slice(slash + 1));
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > max || (slash !== -1 && text.slice(slash + 1) === '')) {
    throw new TypeError(`bad prefix length in ${JSON.stringify(text)}`);
  }
  return { ...ip, prefixLength };
}

/** Formats a route destination: 'default' for a /0, else 'addr/len'. */
export function formatPrefix(bytes: Uint8Array, prefixLength: number): string {
  return prefixLength === 0 ? 'default' : `${formatIp(bytes)}/${prefixLength}`;
}

/** Parses 'aa:bb:cc:dd:ee:ff' into 6 bytes; throws TypeError otherwise. */
export function parseMac(text: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text)) throw new TypeError(`not a MAC address: ${JSON.stringify(text)}`);
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}

/** Formats link-layer address bytes as lower-case colon-separated hex. */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

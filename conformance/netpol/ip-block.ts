/**
 * Address arithmetic for ipBlock peers (IPv4 and IPv6), written for the
 * reference evaluator: is an address inside a CIDR?
 */
import net from 'node:net';

function toBigInt(ip: string): { family: 4 | 6; value: bigint } {
  if (net.isIPv4(ip)) {
    return { family: 4, value: ip.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n) };
  }
  if (!net.isIPv6(ip)) throw new Error(`'${ip}' is not an IP address`);
  const [head, tail] = ip.includes('::') ? (ip.split('::') as [string, string]) : [ip, undefined];
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const expand = (g: string[]) => g.flatMap((x) => (x.includes('.') ? ipv4Groups(x) : [x]));
  const left = expand(groups(head));
  const right = tail === undefined ? [] : expand(groups(tail));
  const all = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  return { family: 6, value: all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
}

function ipv4Groups(dotted: string): string[] {
  const v = toBigInt(dotted).value;
  return [((v >> 16n) & 0xffffn).toString(16), (v & 0xffffn).toString(16)];
}

/** True when ip lies in cidr ("10.0.0.0/8"); addresses of the other family never do. */
export function cidrContains(cidr: string, ip: string): boolean {
  const [base, lenText] = cidr.split('/') as [string, string | undefined];
  const b = toBigInt(base);
  const a = toBigInt(ip);
  if (a.family !== b.family) return false;
  const bits = b.family === 4 ? 32 : 128;
  const len = lenText === undefined ? bits : Number(lenText);
  if (!Number.isInteger(len) || len < 0 || len > bits) throw new Error(`'${cidr}' has an invalid prefix length`);
  const shift = BigInt(bits - len);
  return a.value >> shift === b.value >> shift;
}

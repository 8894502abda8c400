// Interface addresses (IPv4 and IPv6): add (replace semantics by default), delete, list.
import { nlattr, nlattrU32, parseNlattrs } from './nlattr.ts';
import { afOf, AF_INET, formatIp, parseIp, type IpFamily } from '../lib/ip-bytes.ts';
import { isErrno, type Rtnl } from './rtnl.ts';
import {
  IFA_ADDRESS,
  IFA_F_NODAD,
  IFA_FLAGS,
  IFA_LOCAL,
  IFADDRMSG_BYTES,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
} from './rtnl-uapi.ts';

/** An address to put on (or remove from) an interface. */
export interface AddressSpec {
  /** ifindex of the interface. */
  index: number;
  /** '10.1.2.3' or 'fd00::3' (no prefix length). */
  address: string;
  prefixLength: number;
  /** Interface name, only used in error messages. */
  dev?: string;
  /** IPv6: skip duplicate address detection so the address is usable at once. Default true. */
  noDad?: boolean;
  /** Fail with 'EEXIST' if the address is already there instead of replacing it. Default false. */
  exclusive?: boolean;
}

/** An address as listed by the kernel. */
export interface AddressInfo {
  index: number;
  family: IpFamily;
  address: string;
  prefixLength: number;
  /** RT_SCOPE_* number (0 universe, 253 link, 254 host). */
  scope: number;
}

function encode(spec: AddressSpec): Buffer[] {
  const ip = parseIp(spec.address);
  const max = ip.family === 4 ? 32 : 128;
  if (!Number.isInteger(spec.prefixLength) || spec.prefixLength < 0 || spec.prefixLength > max) {
    throw new TypeError(`bad prefix length ${spec.prefixLength} for ${spec.address}`);
  }
  const msg = Buffer.alloc(IFADDRMSG_BYTES);
  msg.writeUInt8(afOf(ip.family), 0);
  msg.writeUInt8(spec.prefixLength, 1);
  msg.writeUInt32LE(spec.index, 4);
  const parts: Buffer[] = [msg, nlattr(IFA_LOCAL, ip.bytes), nlattr(IFA_ADDRESS, ip.bytes)];
  if (ip.family === 6 && spec.noDad !== false) parts.push(nlattrU32(IFA_FLAGS, IFA_F_NODAD));
  return parts;
}

function describe(spec: AddressSpec): string {
  return `${spec.address}/${spec.prefixLength} ${spec.dev ?? `#${spec.index}`}`;
}

/** Adds an address (RTM_NEWADDR, create-or-replace unless `exclusive`); rejects with e.g. 'ENODEV', 'EEXIST'. */
export async function addAddress(rtnl: Rtnl, spec: AddressSpec): Promise<void> {
  const flags = NLM_F_CREATE | (spec.exclusive === true ? NLM_F_EXCL : NLM_F_REPLACE);
  await rtnl.request(RTM_NEWADDR, flags, encode(spec), `add address ${describe(spec)}`);
}

/** Removes an address; resolves false when it was not there (EADDRNOTAVAIL) or the link is gone (ENODEV). */
export async function deleteAddress(rtnl: Rtnl, spec: AddressSpec): Promise<boolean> {
  try {
    await rtnl.request(RTM_DELADDR, 0, encode(spec), `delete address ${describe(spec)}`);
    return true;
  } catch (err: unknown) {
    if (isErrno(err, 'EADDRNOTAVAIL') || isErrno(err, 'ENODEV')) return false;
    throw err;
  }
}

/** Lists the addresses in the namespace of `rtnl` (both families unless `family`), optionally of one ifindex. */
export async function listAddresses(rtnl: Rtnl, index?: number, family?: IpFamily): Promise<AddressInfo[]> {
  const msg = Buffer.alloc(IFADDRMSG_BYTES);
  if (family !== undefined) msg.writeUInt8(afOf(family), 0);
  const replies = await rtnl.request(RTM_GETADDR, NLM_F_DUMP, [msg], 'list addresses');
  const out: AddressInfo[] = [];
  for (const r of replies) {
    if (r.type !== RTM_NEWADDR) continue;
    const ifindex = r.data.readUInt32LE(4);
    if (index !== undefined && ifindex !== index) continue;
    const attrs = parseNlattrs(r.data, IFADDRMSG_BYTES);
    const bytes = attrs.get(IFA_LOCAL) ?? attrs.get(IFA_ADDRESS);
    if (bytes === undefined) continue;
    out.push({
      index: ifindex,
      family: r.data.readUInt8(0) === AF_INET ? 4 : 6,
      address: formatIp(bytes),
      prefixLength: r.data.readUInt8(1),
      scope: r.data.readUInt8(3),
    });
  }
  return out;
}

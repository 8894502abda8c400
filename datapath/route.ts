// Routes in the main table (IPv4 and IPv6): add with replace semantics, delete idempotently, list.
import { nlattr, nlattrU32, parseNlattrs } from './nlattr.ts';
import { afOf, AF_INET, formatIp, formatPrefix, parseIp, parsePrefix, type IpFamily } from '../lib/ip-bytes.ts';
import { isErrno, type Rtnl } from './rtnl.ts';
import {
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RT_SCOPES as SCOPES,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTM_DELROUTE,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTMSG_BYTES,
  RTN_UNICAST,
  RTNH_F_ONLINK,
  RTPROT_BOOT,
} from './rtnl-uapi.ts';

/** A route scope by name (RT_SCOPE_*). */
export type RouteScope = keyof typeof SCOPES;

/** A route to add or delete. */
export interface RouteSpec {
  /** '10.1.2.3/32', 'fd00::/64', a bare address (full-length prefix) or 'default'. */
  dst: string;
  /** Next hop; absent for a directly connected (scope link) route. */
  gateway?: string;
  /** Outgoing ifindex (RTA_OIF); optional for delete. */
  index?: number;
  /** Default: 'link' for an IPv4 route without gateway, else 'universe'. */
  scope?: RouteScope;
  /** Treat the gateway as directly reachable on the link even with no covering prefix (RTNH_F_ONLINK). */
  onlink?: boolean;
  /** Needed only for dst 'default' without a gateway; otherwise taken from dst/gateway. Default 4. */
  family?: IpFamily;
  /** Preferred source address (RTA_PREFSRC). */
  src?: string;
  /** Route metric (RTA_PRIORITY). */
  metric?: number;
  /** Routing table id; default main. */
  table?: number;
  /** Route protocol (rtm_protocol, RTPROT_*), which says who owns the route; default boot, as `ip route add`. */
  protocol?: number;
  /** Fail with 'EEXIST' instead of replacing an existing route to the same dst. Default false. */
  exclusive?: boolean;
  /** Interface name, only used in error messages. */
  dev?: string;
}

/** A route as listed by the kernel. */
export interface RouteInfo {
  family: IpFamily;
  /** 'default' or 'addr/len'. */
  dst: string;
  gateway?: string;
  index?: number;
  scope: RouteScope | number;
  table: number;
  /** RTPROT_* number (2 kernel, 3 boot, 4 static). */
  protocol: number;
  /** RTN_* number (1 unicast, 2 local, ...). */
  type: number;
  onlink: boolean;
  metric?: number;
  src?: string;
}

/** Encodes rtmsg + attributes for a route spec. Pure; exported for tests. */
export function encodeRoute(spec: RouteSpec, forDelete = false): Buffer[] {
  const gw = spec.gateway === undefined ? undefined : parseIp(spec.gateway);
  const dst = parsePrefix(spec.dst, gw?.family ?? spec.family ?? 4);
  if (gw !== undefined && gw.family !== dst.family) {
    throw new TypeError(`route ${spec.dst}: gateway ${spec.gateway} is of another address family`);
  }
  const table = spec.table ?? RT_TABLE_MAIN;
  const scope = forDelete
    ? SCOPES.nowhere // matches any scope
    : SCOPES[spec.scope ?? (gw === undefined && dst.family === 4 ? 'link' : 'universe')];
  const msg = Buffer.alloc(RTMSG_BYTES);
  msg.writeUInt8(afOf(dst.family), 0);
  msg.writeUInt8(dst.prefixLength, 1);
  msg.writeUInt8(table < 256 ? table : 0, 4);
  msg.writeUInt8(forDelete ? 0 : (spec.protocol ?? RTPROT_BOOT), 5);
  msg.writeUInt8(scope, 6);
  msg.writeUInt8(forDelete ? 0 : RTN_UNICAST, 7);
  msg.writeUInt32LE(spec.onlink === true ? RTNH_F_ONLINK : 0, 8);
  const parts: Buffer[] = [msg];
  if (dst.prefixLength > 0) parts.push(nlattr(RTA_DST, dst.bytes));
  if (table >= 256) parts.push(nlattrU32(RTA_TABLE, table));
  if (spec.index !== undefined) parts.push(nlattrU32(RTA_OIF, spec.index));
  if (gw !== undefined) parts.push(nlattr(RTA_GATEWAY, gw.bytes));
  if (spec.src !== undefined) parts.push(nlattr(RTA_PREFSRC, parseIp(spec.src).bytes));
  if (spec.metric !== undefined) parts.push(nlattrU32(RTA_PRIORITY, spec.metric));
  return parts;
}

function describe(spec: RouteSpec): string {
  const via = spec.gateway === undefined ? '' : ` via ${spec.gateway}`;
  const dev = spec.dev ?? (spec.index === undefined ? '' : `#${spec.index}`);
  return `${spec.dst}${via}${dev === '' ? '' : ` dev ${dev}`}`;
}

/** Adds a route, replacing one to the same dst/table/metric unless `exclusive`; rejects with e.g. 'ENETUNREACH', 'ENODEV'. */
export async function addRoute(rtnl: Rtnl, spec: RouteSpec): Promise<void> {
  const flags = NLM_F_CREATE | (spec.exclusive === true ? NLM_F_EXCL : NLM_F_REPLACE);
  await rtnl.request(RTM_NEWROUTE, flags, encodeRoute(spec), `add route ${describe(spec)}`);
}

/** Deletes a route; resolves false, never rejects, when there is no such route (ESRCH) or its link is gone (ENODEV). */
export async function deleteRoute(rtnl: Rtnl, spec: RouteSpec): Promise<boolean> {
  try {
    await rtnl.request(RTM_DELROUTE, 0, encodeRoute(spec, true), `delete route ${describe(spec)}`);
    return true;
  } catch (err: unknown) {
    if (isErrno(err, 'ESRCH') || isErrno(err, 'ENODEV')) return false;
    throw err;
  }
}

/** Decodes an RTM_NEWROUTE payload into a RouteInfo. */
export function parseRoute(data: Buffer): RouteInfo {
  const attrs = parseNlattrs(data, RTMSG_BYTES);
  const family: IpFamily = data.readUInt8(0) === AF_INET ? 4 : 6;
  const dstLen = data.readUInt8(1);
  const scopeNum = data.readUInt8(6);
  const scopeName = (Object.keys(SCOPES) as RouteScope[]).find((k) => SCOPES[k] === scopeNum);
  const route: RouteInfo = {
    family,
    dst: formatPrefix(attrs.get(RTA_DST) ?? Buffer.alloc(family === 4 ? 4 : 16), dstLen),
    scope: scopeName ?? scopeNum,
    table: attrs.get(RTA_TABLE)?.readUInt32LE(0) ?? data.readUInt8(4),
    protocol: data.readUInt8(5),
    type: data.readUInt8(7),
    onlink: (data.readUInt32LE(8) & RTNH_F_ONLINK) !== 0,
  };
  const gw = attrs.get(RTA_GATEWAY);
  if (gw !== undefined) route.gateway = formatIp(gw);
  const oif = attrs.get(RTA_OIF);
  if (oif !== undefined) route.index = oif.readUInt32LE(0);
  const prio = attrs.get(RTA_PRIORITY);
  if (prio !== undefined) route.metric = prio.readUInt32LE(0);
  const src = attrs.get(RTA_PREFSRC);
  if (src !== undefined) route.src = formatIp(src);
  return route;
}

/** Lists routes of one table (default main; 'all' for every table), both families unless `family`. */
export async function listRoutes(
  rtnl: Rtnl,
  opts: { family?: IpFamily; table?: number | 'all' } = {},
): Promise<RouteInfo[]> {
  const msg = Buffer.alloc(RTMSG_BYTES);
  if (opts.family !== undefined) msg.writeUInt8(afOf(opts.family), 0);
  const replies = await rtnl.request(RTM_GETROUTE, NLM_F_DUMP, [msg], 'list routes');
  const table = opts.table ?? RT_TABLE_MAIN;
  const out: RouteInfo[] = [];
  for (const r of replies) {
    if (r.type !== RTM_NEWROUTE) continue;
    const route = parseRoute(r.data);
    if (table === 'all' || route.table === table) out.push(route);
  }
  return out;
}

/**
 * Converts between the internal result (1.1.0 shape) and each supported
 * version's wire format. Pure: no I/O.
 *
 * Differences between versions (containernetworking/cni SPEC.md at each tag,
 * and libcni's pkg/types/040 and pkg/types/100 converters):
 * - 0.3.0, 0.3.1, 0.4.0: every `ips` entry carries `"version": "4"|"6"`.
 * - 1.0.0: `version` removed from `ips` entries.
 * - 1.1.0: interfaces gain `mtu`, `socketPath`, `pciID`; routes gain `mtu`,
 *   `advmss`, `priority`, `table`, `scope`. Older versions never see them.
 */
import { isIP } from 'node:net';
import { parseDns } from './config.ts';
import {
  CNI_ERR,
  CURRENT_VERSION,
  CniError,
  SUPPORTED_VERSIONS,
  compareVersions,
  isSupportedVersion,
  type CniDns,
  type CniInterface,
  type CniIp,
  type CniResult,
  type CniRoute,
  type CniVersion,
  type CniVersionResult,
} from './spec.ts';

function requireSupported(cniVersion: string, what: string): asserts cniVersion is CniVersion {
  if (!isSupportedVersion(cniVersion)) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `cannot ${what} for cniVersion '${cniVersion}': sluice supports only the versions listed in details; set "cniVersion" in the CNI conflist to one of them`,
      `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
}

function hasDns(dns: CniDns | undefined): dns is CniDns {
  return dns !== undefined && Object.values(dns).some((v) => v !== undefined);
}

function copyDns(dns: CniDns): CniDns {
  const out: CniDns = {};
  if (dns.nameservers !== undefined) out.nameservers = [...dns.nameservers];
  if (dns.domain !== undefined) out.domain = dns.domain;
  if (dns.search !== undefined) out.search = [...dns.search];
  if (dns.options !== undefined) out.options = [...dns.options];
  return out;
}

/** "4" or "6" for an address in CIDR notation, as the 0.x `ips[].version` field wants. */
function ipVersion(address: string): '4' | '6' {
  return address.includes(':') ? '6' : '4';
}

/**
 * The result to print for `cniVersion`, converted from the internal 1.1.0
 * shape; keys in spec order, cniVersion first. Throws code 1 for an
 * unsupported version.
 */
export function formatResult(result: CniResult, cniVersion: string): object {
  requireSupported(cniVersion, 'format the result');
  const v11 = compareVersions(cniVersion, '1.1.0') >= 0;
  const v1 = compareVersions(cniVersion, '1.0.0') >= 0;

  const interfaces = result.interfaces.map((i) => {
    const out: Record<string, unknown> = { name: i.name };
    if (i.mac !== undefined) out['mac'] = i.mac;
    if (v11 && i.mtu !== undefined) out['mtu'] = i.mtu;
    if (i.sandbox !== undefined) out['sandbox'] = i.sandbox;
    if (v11 && i.socketPath !== undefined) out['socketPath'] = i.socketPath;
    if (v11 && i.pciID !== undefined) out['pciID'] = i.pciID;
    return out;
  });

  const ips = result.ips.map((ip) => {
    const out: Record<string, unknown> = {};
    if (!v1) out['version'] = ipVersion(ip.address);
    out['address'] = ip.address;
    if (ip.gateway !== undefined) out['gateway'] = ip.gateway;
    if (ip.interface !== undefined) out['interface'] = ip.interface;
    return out;
  });

  const routes = result.routes.map((r) => {
    const out: Record<string, unknown> = { dst: r.dst };
    if (r.gw !== undefined) out['gw'] = r.gw;
    if (v11) {
      for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
        if (r[k] !== undefined) out[k] = r[k];
      }
    }
    return out;
  });

  const out: Record<string, unknown> = { cniVersion, interfaces, ips, routes };
  if (hasDns(result.dns)) out['dns'] = copyDns(result.dns);
  return out;
}

/**
 * The VERSION verb's result: the cniVersion given on stdin (the spec asks the
 * plugin to echo it; CURRENT_VERSION when there was none) and every supported version.
 */
export function versionResult(cniVersion?: string): CniVersionResult {
  const v = cniVersion === undefined || cniVersion === '' ? CURRENT_VERSION : cniVersion;
  return { cniVersion: v, supportedVersions: [...SUPPORTED_VERSIONS] };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function badPrev(field: string, problem: string): CniError {
  return new CniError(
    CNI_ERR.INVALID_CONFIG,
    `prevResult field '${field}' ${problem}: the previous plugin in the chain (or the runtime's cached result) produced a malformed result`,
  );
}

function str(o: Record<string, unknown>, k: string, where: string, required: boolean): string | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) throw badPrev(`${where}.${k}`, 'is missing');
    return undefined;
  }
  if (typeof v !== 'string') throw badPrev(`${where}.${k}`, `must be a string, not ${JSON.stringify(v)}`);
  return v;
}

function int(o: Record<string, unknown>, k: string, where: string, min: number): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw badPrev(`${where}.${k}`, `must be an integer of at least ${min}, not ${JSON.stringify(v)}`);
  }
  return v;
}

function list(o: Record<string, unknown>, k: string): Record<string, unknown>[] {
  const v = o[k];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw badPrev(k, `must be a list, not ${JSON.stringify(v)}`);
  return v.map((e: unknown, i) => {
    if (!isObject(e)) throw badPrev(`${k}[${i}]`, `must be an object, not ${JSON.stringify(e)}`);
    return e;
  });
}

function cidr(value: string, where: string): string {
  const slash = value.indexOf('/');
  const addr = slash < 0 ? value : value.slice(0, slash);
  const len = slash < 0 ? '' : value.slice(slash + 1);
  const family = isIP(addr);
  if (family === 0 || !/^\d{1,3}$/.test(len) || Number(len) > (family === 4 ? 32 : 128)) {
    throw badPrev(where, `must be an address with prefix length such as "10.244.1.7/32", not ${JSON.stringify(value)}`);
  }
  return value;
}

function ipAddress(value: string | undefined, where: string): string | undefined {
  if (value !== undefined && isIP(value) === 0) throw badPrev(where, `must be an IP address, not ${JSON.stringify(value)}`);
  return value;
}

/**
 * Parses a `prevResult` of any supported version (0.3.x/0.4.0 `ips[].version`
 * is accepted and dropped) into the internal shape. Its own `cniVersion`
 * wins; `cniVersion` (the configuration's) is used when it has none. Throws
 * code 1 for an unsupported version (e.g. a 0.2.0 `ip4`/`ip6` result) and
 * code 7 for a malformed result.
 */
export function parsePrevResult(prev: unknown, cniVersion: string): CniResult {
  if (!isObject(prev)) throw badPrev('prevResult', `must be a JSON object, not ${JSON.stringify(prev)}`);
  const version = prev['cniVersion'] === undefined ? cniVersion : prev['cniVersion'];
  if (typeof version !== 'string') throw badPrev('cniVersion', `must be a string, not ${JSON.stringify(version)}`);
  requireSupported(version, 'read prevResult');

  const interfaces: CniInterface[] = list(prev, 'interfaces').map((e, i) => {
    const where = `interfaces[${i}]`;
    const out: CniInterface = { name: str(e, 'name', where, true) as string };
    const mac = str(e, 'mac', where, false);
    if (mac !== undefined && mac !== '') out.mac = mac;
    const mtu = int(e, 'mtu', where, 0);
    if (mtu !== undefined) out.mtu = mtu;
    const sandbox = str(e, 'sandbox', where, false);
    if (sandbox !== undefined && sandbox !== '') out.sandbox = sandbox;
    const socketPath = str(e, 'socketPath', where, false);
    if (socketPath !== undefined && socketPath !== '') out.socketPath = socketPath;
    const pciID = str(e, 'pciID', where, false);
    if (pciID !== undefined && pciID !== '') out.pciID = pciID;
    return out;
  });

  const ips: CniIp[] = list(prev, 'ips').map((e, i) => {
    const where = `ips[${i}]`;
    const address = cidr(str(e, 'address', where, true) as string, `${where}.address`);
    const out: CniIp = { address };
    const declared = e['version'];
    // Some plugins (the reference loopback, through libcni's 0.x converters) emit "version": "": accept it.
    if (declared !== undefined && declared !== '' && declared !== ipVersion(address)) {
      throw badPrev(`${where}.version`, `is ${JSON.stringify(declared)} but the address ${address} is IPv${ipVersion(address)}`);
    }
    const gateway = ipAddress(str(e, 'gateway', where, false), `${where}.gateway`);
    if (gateway !== undefined) out.gateway = gateway;
    const index = int(e, 'interface', where, 0);
    if (index !== undefined) {
      if (index >= interfaces.length) {
        throw badPrev(`${where}.interface`, `is ${index} but there are only ${interfaces.length} interfaces`);
      }
      out.interface = index;
    }
    return out;
  });

  const routes: CniRoute[] = list(prev, 'routes').map((e, i) => {
    const where = `routes[${i}]`;
    const out: CniRoute = { dst: cidr(str(e, 'dst', where, true) as string, `${where}.dst`) };
    const gw = ipAddress(str(e, 'gw', where, false), `${where}.gw`);
    if (gw !== undefined) out.gw = gw;
    for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
      const n = int(e, k, where, 0);
      if (n !== undefined) out[k] = n;
    }
    return out;
  });

  const result: CniResult = { cniVersion: version, interfaces, ips, routes };
  if (prev['dns'] !== undefined && prev['dns'] !== null) {
    const dns = parseDns(prev['dns'], 'prevResult.dns');
    if (hasDns(dns)) result.dns = dns;
  }
  return result;
}

/**
 * CNI spec types and constants, hand-rolled from the CNI specification 1.1.0
 * (containernetworking/cni SPEC.md) and the older result formats Sluice still
 * answers for (0.3.0, 0.3.1, 0.4.0, 1.0.0). Pure: no I/O.
 */

/** Every spec version Sluice accepts in a network configuration, oldest first. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

/** One of SUPPORTED_VERSIONS. */
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

/** The spec version Sluice implements natively; the internal result shape is this version's. */
export const CURRENT_VERSION: CniVersion = '1.1.0';

/** The agent's API socket when the configuration does not name one. */
export { DEFAULT_SOCKET as DEFAULT_AGENT_SOCKET } from '../contract/api-types.ts';

/**
 * Well-known CNI error codes (spec 1.1.0, "Error" result type). 0-99 are
 * reserved by the spec; plugins may use 100+ for their own errors.
 */
export const CNI_ERR = {
  /** Incompatible CNI version. */
  INCOMPATIBLE_VERSION: 1,
  /** Unsupported field in network configuration; the message must contain the key and value. */
  UNSUPPORTED_FIELD: 2,
  /** Container unknown or does not exist; the runtime need not clean up (e.g. call DEL). */
  UNKNOWN_CONTAINER: 3,
  /** Invalid necessary environment variables; the message must name them. */
  INVALID_ENV: 4,
  /** I/O failure, e.g. reading the configuration from stdin failed. */
  IO: 5,
  /** Failed to decode content, e.g. the configuration is not JSON. */
  DECODE: 6,
  /** Invalid network configuration. */
  INVALID_CONFIG: 7,
  /** Try again later: a transient condition the runtime should retry after. */
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot service ADD requests. */
  NOT_AVAILABLE: 50,
  /** STATUS: not available, and existing containers in the network may have limited connectivity. */
  NOT_AVAILABLE_LIMITED: 51,
} as const;

/** The wire form of a CNI error result. */
export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** An error the plugin reports to the runtime as a CNI error result (code, msg, details). */
export class CniError extends Error {
  code: number;
  details?: string;

  constructor(code: number, msg: string, details?: string) {
    super(msg);
    this.name = 'CniError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }

  /**
   * The CNI error result for the given spec version. JSON.stringify calls this
   * with the property key ('' at the top level), so anything that is not a
   * non-empty string falls back to CURRENT_VERSION.
   */
  toJSON(cniVersion?: string): CniErrorJson {
    const out: CniErrorJson = {
      cniVersion: typeof cniVersion === 'string' && cniVersion !== '' ? cniVersion : CURRENT_VERSION,
      code: this.code,
      msg: this.message,
    };
    if (this.details !== undefined) out.details = this.details;
    return out;
  }
}

/** A CNI_COMMAND value Sluice understands. */
export type CniVerb = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';

/** Every CNI_COMMAND value Sluice understands. */
export const CNI_VERBS: readonly CniVerb[] = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'];

/** DNS settings, as in the configuration's and the result's `dns` object. */
export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** One entry of `cni.dev/valid-attachments` (GC input, spec 1.1.0). */
export interface CniAttachment {
  containerID: string;
  ifname: string;
}

/** The plugin configuration Sluice receives on stdin (spec fields plus Sluice's own). */
export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** The agent's API socket; parseNetConf fills in DEFAULT_AGENT_SOCKET. */
  socket?: string;
  /** MTU for the pod interface; the agent's default when absent. */
  mtu?: number;
  /** Where sluice-cni appends its log lines; stderr only when absent. */
  logFile?: string;
  /** Where DEL queues releases while the agent is down; the agent's `<state-dir>/del-queue` (default /var/lib/sluice/del-queue). */
  delQueueDir?: string;
  dns?: CniDns;
  /** The previous plugin's result (chaining, CHECK, DEL), as received: parse it with parsePrevResult. */
  prevResult?: Record<string, unknown>;
  runtimeConfig?: Record<string, unknown>;
  capabilities?: Record<string, unknown>;
  /** Optional runtime metadata; conventions namespace it under `args.cni`. */
  args?: Record<string, unknown>;
  /** GC input: the attachments that are still valid (spec 1.1.0). */
  validAttachments?: CniAttachment[];
}

/** An interface in a result. `mtu`, `socketPath` and `pciID` exist only in 1.1.0. */
export interface CniInterface {
  name: string;
  /** Hardware address, when L2 addresses are meaningful (always set by Sluice). */
  mac?: string;
  mtu?: number;
  /** The netns path for interfaces inside the container; absent for host interfaces. */
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

/** An address in a result, 1.x shape (no `version`). */
export interface CniIp {
  /** Address with prefix length, e.g. "10.244.1.7/32". */
  address: string;
  gateway?: string;
  /** Index into the result's `interfaces`. */
  interface?: number;
}

/** A route in a result. Everything but `dst` and `gw` exists only in 1.1.0. */
export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

/** The internal success result, 1.x shape; formatResult turns it into any supported version. */
export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIp[];
  routes: CniRoute[];
  dns?: CniDns;
}

/** The VERSION verb's result. */
export interface CniVersionResult {
  cniVersion: string;
  supportedVersions: CniVersion[];
}

/** True when `v` is one of SUPPORTED_VERSIONS. */
export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;

/** True when `v` is a MAJOR.MINOR.PATCH version string (no pre-release or build suffix). */
export function isVersionString(v: string): boolean {
  return SEMVER.test(v);
}

/** Compares two MAJOR.MINOR.PATCH versions: negative, zero or positive; throws on a malformed one. */
export function compareVersions(a: string, b: string): number {
  const pa = SEMVER.exec(a);
  const pb = SEMVER.exec(b);
  if (pa === null || pb === null) throw new Error(`cannot compare versions '${a}' and '${b}': expected MAJOR.MINOR.PATCH`);
  for (let i = 1; i <= 3; i++) {
    const d = Number(pa[i]) - Number(pb[i]);
    if (d !== 0) return d;
  }
  return 0;
}

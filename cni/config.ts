/**
 * Reads and validates what the runtime hands sluice-cni: the plugin
 * configuration on stdin and the CNI_* environment variables. Pure: the
 * caller reads stdin and process.env and passes them in.
 */
import {
  CNI_ERR,
  CNI_VERBS,
  CniError,
  DEFAULT_AGENT_SOCKET,
  SUPPORTED_VERSIONS,
  compareVersions,
  isSupportedVersion,
  isVersionString,
  type CniAttachment,
  type CniDns,
  type CniVerb,
  type CniVersion,
  type NetConf,
} from './spec.ts';
import { errorMessage } from '../lib/errors.ts';

/** Network names and container IDs (spec 1.1.0, sections 1 and 2): alphanumeric first, then [a-zA-Z0-9_.-]. */
const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;

/**
 * Longest CNI_CONTAINERID accepted. Neither the spec nor libcni's
 * utils.ValidateContainerID (used by pkg/skel for ADD, CHECK and DEL) bound the
 * length: they only require the charset above. Runtimes send 64 hex
 * characters (containerd, CRI-O); 256 leaves room for any sane runtime while
 * keeping keys in the agent's IPAM store and in log lines bounded.
 */
export const MAX_CONTAINER_ID_LENGTH = 256;

/** IFNAMSIZ (16) minus the NUL: the kernel's dev_valid_name() and libcni's ValidateInterfaceName. */
export const MAX_IFNAME_BYTES = 15;

/** The smallest MTU Linux accepts on an IPv4 interface (RFC 791 minimum datagram). */
const MIN_MTU = 68;
const MAX_MTU = 65535;

const CONFLIST_HINT = 'fix the Sluice entry in the CNI conflist (usually /etc/cni/net.d/*-sluice.conflist)';

/** The CNI_* parameters of one invocation, validated for its verb. */
export interface CniEnv {
  command: CniVerb;
  /** CNI_CONTAINERID; '' for STATUS, GC and VERSION, which take none. */
  containerId: string;
  /** CNI_NETNS; '' when absent (allowed for DEL, which must clean up anyway). */
  netns: string;
  /** CNI_IFNAME; '' for STATUS, GC and VERSION. */
  ifname: string;
  /** CNI_ARGS as key/value pairs. */
  args: Record<string, string>;
  /** CNI_PATH split on ':' (empty entries dropped). */
  path: string[];
}

/** Pod identity from the runtime's K8S_POD_* arguments. */
export interface PodIdentity {
  namespace?: string;
  name?: string;
  infraContainerId?: string;
  uid?: string;
}

type EnvName = 'CNI_CONTAINERID' | 'CNI_NETNS' | 'CNI_IFNAME' | 'CNI_PATH';

/**
 * Environment variables each verb requires. ADD/CHECK/DEL follow libcni's
 * pkg/skel (which, unlike the spec text, also requires CNI_PATH); DEL may omit
 * CNI_NETNS (spec: "Optional environment parameters: CNI_NETNS"). GC requires
 * CNI_PATH (spec 1.1.0 and pkg/skel). STATUS requires only CNI_COMMAND in the
 * spec; pkg/skel also demands CNI_PATH, but Sluice never executes delegated
 * plugins, so a readiness probe should not fail for want of a search path.
 * VERSION requires only CNI_COMMAND.
 */
const REQUIRED_ENV: Record<CniVerb, readonly EnvName[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  GC: ['CNI_PATH'],
  STATUS: [],
  VERSION: [],
};

/** The first spec version that defines each verb; libcni's skel rejects older configs with code 1. */
const VERB_MIN_VERSION: Partial<Record<CniVerb, string>> = {
  CHECK: '0.4.0',
  STATUS: '1.1.0',
  GC: '1.1.0',
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  return `${typeof v} ${JSON.stringify(v)}`;
}

function invalidConfig(field: string, problem: string): CniError {
  return new CniError(CNI_ERR.INVALID_CONFIG, `network configuration field '${field}' ${problem}: ${CONFLIST_HINT}`);
}

function optionalString(raw: Record<string, unknown>, field: string, prefix = ''): string | undefined {
  const v = raw[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalidConfig(prefix + field, `must be a string, not ${describe(v)}`);
  return v;
}

function optionalStringList(raw: Record<string, unknown>, field: string, prefix: string): string[] | undefined {
  const v = raw[field];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
    throw invalidConfig(prefix + field, `must be a list of strings, not ${describe(v)}`);
  }
  return [...v];
}

function optionalObject(raw: Record<string, unknown>, field: string): Record<string, unknown> | undefined {
  const v = raw[field];
  if (v === undefined) return undefined;
  if (!isObject(v)) throw invalidConfig(field, `must be a JSON object, not ${describe(v)}`);
  return v;
}

/** Parses a `dns` object (configuration or result); `where` names it in messages. Throws code 7. */
export function parseDns(v: unknown, where: string): CniDns {
  if (!isObject(v)) throw invalidConfig(where, `must be a JSON object, not ${describe(v)}`);
  const dns: CniDns = {};
  const prefix = `${where}.`;
  const nameservers = optionalStringList(v, 'nameservers', prefix);
  if (nameservers !== undefined) dns.nameservers = nameservers;
  const domain = optionalString(v, 'domain', prefix);
  if (domain !== undefined) dns.domain = domain;
  const search = optionalStringList(v, 'search', prefix);
  if (search !== undefined) dns.search = search;
  const options = optionalStringList(v, 'options', prefix);
  if (options !== undefined) dns.options = options;
  return dns;
}

function parseAttachments(v: unknown, field: string): CniAttachment[] {
  if (!Array.isArray(v)) throw invalidConfig(field, `must be a list of {"containerID", "ifname"} objects, not ${describe(v)}`);
  return v.map((a: unknown, i) => {
    if (!isObject(a) || typeof a['containerID'] !== 'string' || typeof a['ifname'] !== 'string') {
      throw invalidConfig(`${field}[${i}]`, `must be an object with string "containerID" and "ifname", not ${describe(a)}`);
    }
    return { containerID: a['containerID'], ifname: a['ifname'] };
  });
}

/**
 * Decodes and validates the plugin configuration from stdin. Throws CniError:
 * 6 when it is not a JSON object, 7 when cniVersion/name/type or a known field
 * is missing or of the wrong type, 1 when cniVersion is not supported.
 * Unknown fields are ignored (the spec lets runtimes pass them through).
 */
export function parseNetConf(stdin: string | Buffer): NetConf {
  const text = typeof stdin === 'string' ? stdin : stdin.toString('utf8');
  if (text.trim() === '') {
    throw new CniError(
      CNI_ERR.DECODE,
      'network configuration on stdin is empty: the container runtime must pass the plugin configuration as JSON on stdin',
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err: unknown) {
    throw new CniError(
      CNI_ERR.DECODE,
      `network configuration on stdin is not valid JSON: ${CONFLIST_HINT}`,
      errorMessage(err),
    );
  }
  if (!isObject(raw)) {
    throw new CniError(CNI_ERR.DECODE, `network configuration on stdin must be a JSON object, not ${describe(raw)}: ${CONFLIST_HINT}`);
  }

  const cniVersion = raw['cniVersion'];
  if (cniVersion === undefined) throw invalidConfig('cniVersion', 'is missing');
  if (typeof cniVersion !== 'string' || !isVersionString(cniVersion)) {
    throw invalidConfig('cniVersion', `must be a version string such as "1.1.0", not ${describe(cniVersion)}`);
  }
  if (!isSupportedVersion(cniVersion)) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `cniVersion '${cniVersion}' is not supported by sluice: set "cniVersion" in the CNI conflist to one of the supported versions`,
      `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }

  const name = raw['name'];
  if (name === undefined) throw invalidConfig('name', 'is missing');
  if (typeof name !== 'string') throw invalidConfig('name', `must be a string, not ${describe(name)}`);
  if (!NAME_PATTERN.test(name)) {
    throw invalidConfig(
      'name',
      `(${JSON.stringify(name)}) is invalid: network names start with a letter or digit, followed by letters, digits, '_', '.' or '-'`,
    );
  }

  const type = raw['type'];
  if (type === undefined) throw invalidConfig('type', 'is missing');
  if (typeof type !== 'string') throw invalidConfig('type', `must be a string, not ${describe(type)}`);
  if (type === '' || /[/\\]/.test(type)) {
    throw invalidConfig('type', `(${JSON.stringify(type)}) is invalid: it names the plugin binary and must be non-empty without '/' or '\\'`);
  }

  const conf: NetConf = { cniVersion, name, type, socket: DEFAULT_AGENT_SOCKET };

  const socket = optionalString(raw, 'socket');
  if (socket !== undefined) {
    if (!socket.startsWith('/')) throw invalidConfig('socket', `(${JSON.stringify(socket)}) must be an absolute path to the agent's socket`);
    conf.socket = socket;
  }
  const mtu = raw['mtu'];
  if (mtu !== undefined) {
    if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) {
      throw invalidConfig('mtu', `must be an integer from ${MIN_MTU} to ${MAX_MTU}, not ${describe(mtu)}`);
    }
    conf.mtu = mtu;
  }
  const logFile = optionalString(raw, 'logFile');
  if (logFile !== undefined) {
    if (logFile === '') throw invalidConfig('logFile', 'must be a file path, not empty');
    conf.logFile = logFile;
  }
  const delQueueDir = optionalString(raw, 'delQueueDir');
  if (delQueueDir !== undefined) {
    if (!delQueueDir.startsWith('/')) throw invalidConfig('delQueueDir', `(${JSON.stringify(delQueueDir)}) must be an absolute path: the agent's <state-dir>/del-queue`);
    conf.delQueueDir = delQueueDir;
  }
  if (raw['dns'] !== undefined) conf.dns = parseDns(raw['dns'], 'dns');
  const prevResult = optionalObject(raw, 'prevResult');
  if (prevResult !== undefined) conf.prevResult = prevResult;
  const runtimeConfig = optionalObject(raw, 'runtimeConfig');
  if (runtimeConfig !== undefined) conf.runtimeConfig = runtimeConfig;
  const capabilities = optionalObject(raw, 'capabilities');
  if (capabilities !== undefined) conf.capabilities = capabilities;
  const args = optionalObject(raw, 'args');
  if (args !== undefined) conf.args = args;
  // libcni (>= 1.2.3) sets both keys because an earlier spec text named it
  // `cni.dev/attachments` (containernetworking/cni#1101); prefer the spec name.
  const attachmentsKey = raw['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
  if (raw[attachmentsKey] !== undefined) conf.validAttachments = parseAttachments(raw[attachmentsKey], attachmentsKey);
  return conf;
}

function invalidEnv(msg: string): CniError {
  return new CniError(CNI_ERR.INVALID_ENV, msg);
}

/** Throws code 4 unless `id` is a valid CNI_CONTAINERID. */
export function validateContainerId(id: string): void {
  if (id.length > MAX_CONTAINER_ID_LENGTH) {
    throw invalidEnv(
      `CNI_CONTAINERID is invalid: it is ${id.length} characters long and sluice accepts at most ${MAX_CONTAINER_ID_LENGTH}; check the container runtime`,
    );
  }
  if (!NAME_PATTERN.test(id)) {
    throw invalidEnv(
      `CNI_CONTAINERID ${JSON.stringify(id)} is invalid: container IDs start with a letter or digit, followed by letters, digits, '_', '.' or '-'; check the container runtime`,
    );
  }
}

/** Throws code 4 unless `ifname` is a valid Linux interface name (CNI_IFNAME). */
export function validateIfname(ifname: string): void {
  const problems: string[] = [];
  if (Buffer.byteLength(ifname, 'utf8') > MAX_IFNAME_BYTES) problems.push(`it is longer than ${MAX_IFNAME_BYTES} bytes`);
  if (ifname === '.' || ifname === '..') problems.push(`it is '${ifname}'`);
  // Go's unicode.IsSpace (used by libcni) also counts U+0085, which \s does not.
  if (/[/:\s\u0085]/u.test(ifname)) problems.push("it contains '/', ':' or whitespace");
  if (problems.length > 0) {
    throw invalidEnv(
      `CNI_IFNAME ${JSON.stringify(ifname)} is invalid (${problems.join('; ')}): interface names are 1 to ${MAX_IFNAME_BYTES} bytes, ` +
        `not '.' or '..', and contain no '/', ':' or whitespace; fix the interface name the runtime passes (usually eth0)`,
    );
  }
}

/**
 * Parses CNI_ARGS ("K=V;K=V"). Each pair needs exactly one '=' and a non-empty
 * key, as in libcni's types.LoadArgs; values may be empty. Empty segments (a
 * trailing ';') are skipped, where LoadArgs would reject them. Throws code 4.
 */
export function parseCniArgs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const parts = pair.split('=');
    if (parts.length !== 2 || parts[0] === '') {
      throw invalidEnv(
        `CNI_ARGS is invalid: ${JSON.stringify(pair)} is not a KEY=VALUE pair; CNI_ARGS must be KEY=VALUE pairs separated by ';' (e.g. "IgnoreUnknown=1;K8S_POD_NAME=web")`,
      );
    }
    out[parts[0] as string] = parts[1] as string;
  }
  return out;
}

/**
 * Reads and validates the CNI_* variables for the verb in CNI_COMMAND; which
 * ones are required depends on the verb (see REQUIRED_ENV). Throws CniError
 * code 4 naming every missing or invalid variable.
 */
export function parseEnv(env: NodeJS.ProcessEnv | Record<string, string | undefined>): CniEnv {
  const get = (k: string): string => env[k] ?? '';
  const command = get('CNI_COMMAND');
  if (command === '') {
    throw invalidEnv(`CNI_COMMAND is not set: sluice is a CNI plugin and is run by the container runtime with CNI_COMMAND set to one of ${CNI_VERBS.join(', ')}`);
  }
  if (!(CNI_VERBS as readonly string[]).includes(command)) {
    throw invalidEnv(`CNI_COMMAND ${JSON.stringify(command)} is unknown: sluice supports ${CNI_VERBS.join(', ')}`);
  }
  const verb = command as CniVerb;
  const required = REQUIRED_ENV[verb];
  const missing = required.filter((k) => get(k) === '');
  if (missing.length > 0) {
    throw invalidEnv(
      `required environment variables missing for ${verb}: ${missing.join(', ')}; the container runtime must set them (CNI spec, section 2)`,
    );
  }
  // Attachment parameters only mean something to the verbs that act on one attachment.
  const perAttachment = verb === 'ADD' || verb === 'CHECK' || verb === 'DEL';
  const containerId = perAttachment ? get('CNI_CONTAINERID') : '';
  const ifname = perAttachment ? get('CNI_IFNAME') : '';
  const netns = perAttachment ? get('CNI_NETNS') : '';
  if (perAttachment) {
    validateContainerId(containerId);
    validateIfname(ifname);
  }
  return {
    command: verb,
    containerId,
    netns,
    ifname,
    // VERSION must answer whatever else the environment holds.
    args: verb === 'VERSION' ? {} : parseCniArgs(get('CNI_ARGS')),
    path: get('CNI_PATH').split(':').filter((p) => p !== ''),
  };
}

const POD_KEYS = [
  ['namespace', 'K8S_POD_NAMESPACE'],
  ['name', 'K8S_POD_NAME'],
  ['infraContainerId', 'K8S_POD_INFRA_CONTAINER_ID'],
  ['uid', 'K8S_POD_UID'],
] as const;

/**
 * The pod this attachment belongs to, from the K8S_POD_* keys in CNI_ARGS
 * (set by containerd and CRI-O). The same keys under the configuration's
 * `args.cni` (the conventions' namespace for structured runtime metadata)
 * take precedence; non-string or empty values there are ignored, as the
 * conventions say plugins may ignore `args` they do not understand.
 */
export function podIdentity(env: Pick<CniEnv, 'args'>, conf: Pick<NetConf, 'args'>): PodIdentity {
  const cniArgs = conf.args !== undefined && isObject(conf.args['cni']) ? conf.args['cni'] : {};
  const out: PodIdentity = {};
  for (const [field, key] of POD_KEYS) {
    const fromConf = cniArgs[key];
    const fromEnv = env.args[key];
    if (typeof fromConf === 'string' && fromConf !== '') out[field] = fromConf;
    else if (fromEnv !== undefined && fromEnv !== '') out[field] = fromEnv;
  }
  return out;
}

/**
 * Throws CniError code 1 (INCOMPATIBLE_VERSION) when the configuration's
 * version predates the verb: CHECK needs 0.4.0, STATUS and GC need 1.1.0.
 * This is what libcni's pkg/skel does ("config version does not allow CHECK").
 * The version is a parsed configuration's, so parseNetConf has already
 * refused an unsupported one.
 */
export function checkVerbAllowed(verb: CniVerb, cniVersion: CniVersion): void {
  const min = VERB_MIN_VERSION[verb];
  if (min !== undefined && compareVersions(cniVersion, min) < 0) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `config version does not allow ${verb}: ${verb} needs cniVersion ${min} or later and the configuration says ${cniVersion}; raise "cniVersion" in the CNI conflist`,
    );
  }
}

/**
 * Loads the datapath into the kernel, or adopts the one a previous agent left
 * pinned, so that traffic keeps flowing across agent restarts.
 *
 * Layout under pinDir:
 *   maps/<map name>   pinned by libbpf (LIBBPF_PIN_BY_NAME), re-used on every load
 *   progs/from_pod    the programs the CNI attaches to each host veth
 *   progs/to_pod
 *   progs/ct_sweep    the conntrack sweep the agent runs (BPF_PROG_TEST_RUN)
 *   progs/service_egress, progs/vxlan_in
 *                     the node's netfilter programs (datapath/netfilter.ts)
 *   links/            TCX links, pinned there by the CNI
 *   netfilter/        the agent's netfilter links
 */
import { join } from 'node:path';
import {
  CIDR_POLICY_KEY,
  CIDR_POLICY_VALUE,
  COUNTER_KEY_SIZE,
  COUNTER_NAMES,
  COUNTER_VALUE,
  CT_COUNT,
  CT_KEY,
  CT_VALUE,
  DATAPATH_CONFIG,
  Counter,
  DEVICE_KEY_SIZE,
  ENDPOINT_INFO,
  ENDPOINT_KEY,
  EP_COUNTER_KEY,
  FRAG_KEY,
  FRAG_VALUE,
  IPCACHE_KEY,
  IPCACHE_VALUE,
  POLICY_KEY,
  POLICY_VALUE,
  decodeCounterValue,
  encodeU32,
  type CounterName,
  type CounterTotal,
} from './abi.ts';
import type { BpfMap } from './bpf-map.ts';
import { DatapathLayoutError, datapathVersion, layoutChanges, pinVersion, readPinnedVersion } from './pin-version.ts';
import { allPinned, closeMaps, loadAndPin as loadAndPinObject, openPinnedMaps, pinDirs, type MapSpec } from './pinned-object.ts';
import { migratePins, recoverPins, refusedMaps, switchTcxLinks } from './pin-migration.ts';
import { removePinTree } from './bpffs.ts';
import type { MigrationReport } from './pin-migration.ts';

/** The object's name, which libbpf gives its internal maps. */
export const OBJECT_NAME = 'sluice';
const MAPS_DIR = 'maps';
const PROGS_DIR = 'progs';
const PROG_FROM_POD = 'from_pod';
const PROG_TO_POD = 'to_pod';
const PROG_CT_SWEEP = 'ct_sweep';
const PROG_SERVICE_EGRESS = 'service_egress';
const PROG_VXLAN_IN = 'vxlan_in';
const PROGRAMS = [PROG_FROM_POD, PROG_TO_POD, PROG_CT_SWEEP, PROG_SERVICE_EGRESS, PROG_VXLAN_IN];
const NETFILTER_DIR = 'netfilter';
/** Pinned maps read by other means: `events` by the monitor's ring buffer reader; the Service NAT's by the kernel only, the ref slots filled by datapath/service-nat.ts. */
const UNOPENED_MAPS = ['events', 'event_rate', 'lb_nat', 'lb_nat_affinity', 'lb_services_ref', 'lb_backends_ref'];

/** The datapath's maps, open in this process. */
export interface DatapathMaps {
  endpoints: BpfMap;
  devices: BpfMap;
  counters: BpfMap;
  ipcache: BpfMap;
  policy: BpfMap;
  cidr_policy: BpfMap;
  conntrack: BpfMap;
  ct_counts: BpfMap;
  fragments: BpfMap;
  ep_counters: BpfMap;
  config: BpfMap;
}

/** A loaded (or adopted) datapath. */
export interface Datapath {
  /** True if the pinned programs and maps of a previous load were re-used as they were. */
  adopted: boolean;
  /** The version (pin-version.ts) of the object this agent carries. */
  version: string;
  /**
   * The version of the programs running: this agent's, or, when it adopted
   * pins of another object with the same map layouts, that one's ('unknown'
   * for pins older than the record). Differs from version until the programs
   * are replaced (issue 33, step 2).
   */
  runningVersion: string;
  /**
   * When this agent took over pins of another version: that version, the
   * TCX links switched to the new programs, and those that could not be (the
   * version is then 'mixed'), and, when map layouts changed, the maps
   * migrated (pin-migration.ts) and what was done with each; also set when
   * an interrupted migration was finished. The netfilter links are the
   * agent's to replace (syncNetfilterLinks with reload).
   */
  replaced: { from: string; links: number; failed: string[]; migrated: MigrationReport['maps']; /** after a migration: what the catch-up carried into each copied map */ caughtUp?: MigrationReport['caughtUp'] } | null;
  maps: DatapathMaps;
  /** Pinned programs, for attachTcx. */
  /** fromPod/toPod: attached by the CNI to each host veth; ctSweep: run by the agent; the netfilter programs. */
  progPaths: { fromPod: string; toPod: string; ctSweep: string; serviceEgress: string; vxlanIn: string };
  /** Where the CNI pins TCX links. */
  linksDir: string;
  /** Where the agent pins its netfilter links. */
  netfilterDir: string;
  /** The pinned ring buffer of monitor events. */
  eventsPath: string;
  /** Every counter summed over CPUs. */
  readCounters(): Record<CounterName, CounterTotal>;
  /** Closes this process's map fds; everything pinned stays in the kernel. */
  close(): void;
}

/** Options for loadDatapath. */
export interface LoadDatapathOptions {
  /** A directory on bpffs, e.g. /sys/fs/bpf/sluice. */
  pinDir: string;
  /** The compiled eBPF object (see bpfObjectBytes()). */
  objectBytes: Buffer;
  /** False: adopt pins of another version as they are, without replacing their programs or migrating maps (default true). */
  replace?: boolean;
}

const MAP_SPECS: Record<keyof DatapathMaps, MapSpec> = {
  endpoints: { keySize: ENDPOINT_KEY.size, valueSize: ENDPOINT_INFO.size, perCpu: false },
  devices: { keySize: DEVICE_KEY_SIZE, valueSize: ENDPOINT_INFO.size, perCpu: false },
  counters: { keySize: COUNTER_KEY_SIZE, valueSize: COUNTER_VALUE.size, perCpu: true },
  ipcache: { keySize: IPCACHE_KEY.size, valueSize: IPCACHE_VALUE.size, perCpu: false },
  policy: { keySize: POLICY_KEY.size, valueSize: POLICY_VALUE.size, perCpu: false },
  cidr_policy: { keySize: CIDR_POLICY_KEY.size, valueSize: CIDR_POLICY_VALUE.size, perCpu: false },
  conntrack: { keySize: CT_KEY.size, valueSize: CT_VALUE.size, perCpu: false },
  ct_counts: { keySize: DEVICE_KEY_SIZE, valueSize: CT_COUNT.size, perCpu: false },
  fragments: { keySize: FRAG_KEY.size, valueSize: FRAG_VALUE.size, perCpu: false },
  ep_counters: { keySize: EP_COUNTER_KEY.size, valueSize: COUNTER_VALUE.size, perCpu: true },
  config: { keySize: COUNTER_KEY_SIZE, valueSize: DATAPATH_CONFIG.size, perCpu: false },
};

/**
 * Adopts the pinned datapath under pinDir if it is complete, else loads
 * objectBytes (re-using any maps already pinned) and pins its programs,
 * replacing stale program pins. Throws BpfError on a kernel or libbpf failure.
 */
export function loadDatapath(options: LoadDatapathOptions): Datapath {
  const { pinDir } = options;
  const dirs = pinDirs(pinDir);
  const { mapsDir, progsDir, linksDir } = dirs;

  const progPaths = programPaths(progsDir);
  // What an interrupted migration left is finished (or discarded) before anything looks at the pins.
  const recovered = recoverPins(pinDir);
  // Maps the agent does not open as BpfMap (ring buffer, rate state) must exist for adoption too.
  const adopted = allPinned(dirs, PROGRAMS, [...Object.keys(MAP_SPECS), ...UNOPENED_MAPS]);
  const version = datapathVersion(options.objectBytes);
  let runningVersion = version;
  let replaced: Datapath['replaced'] = recovered ? { from: 'an interrupted migration', ...recovered, migrated: [] } : null;
  // Maps whose layout changed are migrated where they can be; otherwise refused, and nothing is removed.
  const changes = layoutChanges(options.objectBytes, mapsDir, OBJECT_NAME);
  if (changes.length > 0) {
    const { steps, refused } = refusedMaps(options.objectBytes, mapsDir, OBJECT_NAME, changes);
    if (refused.length > 0 || options.replace === false) throw new DatapathLayoutError(pinDir, changes, refused);
    const from = readPinnedVersion(mapsDir) ?? 'unknown';
    const migration = migratePins(pinDir, steps, options.objectBytes, OBJECT_NAME, version, (m, p) => loadProgramsInto(options.objectBytes, m, p));
    replaced = { from, links: migration.links, failed: migration.failed, migrated: migration.maps, caughtUp: migration.caughtUp };
    runningVersion = migration.failed.length === 0 ? version : 'mixed';
  } else if (adopted) {
    runningVersion = readPinnedVersion(mapsDir) ?? 'unknown';
    if (runningVersion !== version && options.replace !== false) {
      // Another object with the same map layouts: its programs take over the maps, and every link switches.
      const switched = replacePrograms(options.objectBytes, mapsDir, progsDir, linksDir);
      replaced = { from: runningVersion, ...switched, migrated: [] };
      runningVersion = switched.failed.length === 0 ? version : 'mixed';
      if (switched.failed.length === 0) pinVersions(pinDir, version);
    }
  } else if (readPinnedVersion(mapsDir) !== null && options.replace !== false) {
    // Pins of a whole datapath without some of this object's maps or programs (a version from
    // before one was added, or after one was removed): loaded with them, and every link switched.
    const from = readPinnedVersion(mapsDir) ?? 'unknown';
    const switched = replacePrograms(options.objectBytes, mapsDir, progsDir, linksDir);
    replaced = { from, ...switched, migrated: [] };
    runningVersion = switched.failed.length === 0 ? version : 'mixed';
    if (switched.failed.length === 0) pinVersions(pinDir, version);
  } else {
    loadAndPin(options.objectBytes, mapsDir, progsDir);
    pinVersions(pinDir, version);
  }

  const maps = openPinnedMaps(mapsDir, MAP_SPECS);
  return {
    adopted,
    version,
    runningVersion,
    replaced,
    maps,
    progPaths,
    linksDir,
    netfilterDir: join(pinDir, NETFILTER_DIR),
    eventsPath: join(mapsDir, 'events'),
    readCounters: () => readCounters(maps.counters),
    close: () => closeMaps(maps),
  };
}

/**
 * Loads the object's programs against the pinned maps (whose layouts were
 * checked to be the same), pins them in place of the old ones, and switches
 * every pinned TCX link to its new program with BPF_LINK_UPDATE, one link
 * at a time and atomically each: a packet runs the old program or the new,
 * and both read the same maps. An endpoint's two links switch a moment
 * apart; that is safe because the layouts are identical. The CNI plugin
 * attaches the new pins from then on.
 */
function replacePrograms(objectBytes: Buffer, mapsDir: string, progsDir: string, linksDir: string): { links: number; failed: string[] } {
  loadAndPin(objectBytes, mapsDir, progsDir);
  const progPaths = programPaths(progsDir);
  return switchTcxLinks(linksDir, progPaths.fromPod, progPaths.toPod);
}

/** The version recorded with the maps and with the programs (pin-migration.ts tells sets apart by it). */
function pinVersions(pinDir: string, version: string): void {
  pinVersion(join(pinDir, MAPS_DIR), version);
  pinVersion(join(pinDir, PROGS_DIR), version);
}

/** Loads the object against the maps pinned under mapsDir (creating and pinning those absent), its programs pinned under progsDir. */
export function loadProgramsInto(objectBytes: Buffer, mapsDir: string, progsDir: string): void {
  loadAndPin(objectBytes, mapsDir, progsDir);
}

function programPaths(progsDir: string): Datapath['progPaths'] {
  return {
    fromPod: join(progsDir, PROG_FROM_POD),
    toPod: join(progsDir, PROG_TO_POD),
    ctSweep: join(progsDir, PROG_CT_SWEEP),
    serviceEgress: join(progsDir, PROG_SERVICE_EGRESS),
    vxlanIn: join(progsDir, PROG_VXLAN_IN),
  };
}

/** Unpins everything under pinDir (detaching pinned TCX links) and removes its directories; absent → no-op. */
export function removeDatapath(pinDir: string): void {
  removePinTree(pinDir);
}

/** Loads the datapath object against the maps under mapsDir (pinned-object.ts), its programs pinned under progsDir. */
function loadAndPin(objectBytes: Buffer, mapsDir: string, progsDir: string): void {
  loadAndPinObject({ objectBytes, objectName: OBJECT_NAME, mapsDir, programs: PROGRAMS, progPath: (name) => join(progsDir, name) });
}

function readCounters(counters: BpfMap): Record<CounterName, CounterTotal> {
  const result = {} as Record<CounterName, CounterTotal>;
  for (const name of COUNTER_NAMES) {
    let packets = 0n;
    let bytes = 0n;
    for (const slot of counters.lookupPerCpu(encodeU32(Counter[name]))) {
      const value = decodeCounterValue(slot);
      packets += value.packets;
      bytes += value.bytes;
    }
    result[name] = { packets: Number(packets), bytes: Number(bytes) };
  }
  return result;
}


/**
 * The local cluster's on-disk description (cluster.json) and the paths it
 * implies. Every `sluice local` command after `up` finds the cluster through
 * `--dir`, $SLUICE_LOCAL_DIR, or the default directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import sea from 'node:sea';
import { LocalDatastore } from '../../agent/datastore/local.ts';
import type { RoutingMode } from '../../agent/routing/plan.ts';

/** Where `sluice local` keeps a cluster unless told otherwise. */
export const DEFAULT_CLUSTER_DIR = '/var/lib/sluice/local';
/** Where `ip netns add` bind-mounts named network namespaces. */
export const NETNS_DIR = '/var/run/netns';

/** One node of the local cluster. */
export interface LocalNode {
  name: string;
  /** The node's network namespace under /var/run/netns; absent: the host's own (a one-node cluster). */
  netns?: string;
  podCIDRs: string[];
  /** The node's InternalIP on the underlay; absent on the host node. */
  address?: string;
  socket: string;
  stateDir: string;
  bpfDir: string;
  cniConfFile: string;
  agentPid: number;
  logFile: string;
}

/** The bridge that joins the nodes: a Linux bridge in a network namespace of its own. */
export interface Underlay {
  netns: string;
  bridge: string;
  /** e.g. 172.23.5.0/24; node i (from 1) has address .i */
  cidr: string;
}

/** What `local up` decided, read by every other local command. */
export interface ClusterConfig {
  name: string;
  dir: string;
  nodeName: string;
  podCIDRs: string[];
  socket: string;
  stateDir: string;
  bpfDir: string;
  agentPid: number;
  cniBinDir: string;
  cniConfFile: string;
  /** Extra flags for the agent (`local up --agent-arg`), e.g. shorter conntrack timeouts in tests. */
  agentArgs?: string[];
  /** The agent's --metrics-address; absent or '0': metrics off (several local clusters may run at once). */
  metricsAddress?: string;
  /** `up --nodes N` (N ≥ 2): every node, each a netns with its own agent; absent: this host is the one node (the fields above). */
  nodes?: LocalNode[];
  /** The bridge joining the nodes (with `nodes`). */
  underlay?: Underlay;
  /** How pods reach pods on other nodes (`up --routing`; the agent's default, native, when absent). */
  routing?: RoutingMode;
}

/** The cluster directory from the flag, the environment, or the default. */
export function clusterDir(flag?: string): string {
  return path.resolve(flag ?? process.env.SLUICE_LOCAL_DIR ?? DEFAULT_CLUSTER_DIR);
}

/** Reads cluster.json; throws a message telling how to bring a cluster up when there is none. */
export function loadCluster(dir: string): ClusterConfig {
  const file = path.join(dir, 'cluster.json');
  if (!fs.existsSync(file)) throw new Error(`no local cluster at ${dir}: run 'sluice local up' first`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as ClusterConfig;
}

/** Writes cluster.json. */
export function saveCluster(config: ClusterConfig): void {
  fs.mkdirSync(config.dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(config.dir, 'cluster.json'), JSON.stringify(config, null, 2) + '\n');
}

/** The cluster's datastore. */
export function datastoreOf(config: ClusterConfig): LocalDatastore {
  return new LocalDatastore(path.join(config.dir, 'datastore'));
}

/** The netns name of a pod: unique per cluster, usable with `ip netns exec`. */
export function podNetnsName(config: ClusterConfig, namespace: string, name: string): string {
  return `${config.name}-${namespace}-${name}`;
}

/** The command line that runs this CLI again (the single executable, or node + script in development). */
export function selfCommand(): string[] {
  if (sea.isSea()) return [process.execPath];
  return [process.execPath, ...process.execArgv, process.argv[1]!];
}

/** The sluice-cni executable that `local up` installs as the `sluice` plugin. */
export function defaultCniBinary(): string {
  if (process.env.SLUICE_CNI_BIN) return path.resolve(process.env.SLUICE_CNI_BIN);
  const dir = sea.isSea() ? path.dirname(process.execPath) : path.resolve(import.meta.dirname, '../../dist');
  return path.join(dir, 'sluice-cni');
}

/** True when a process with this PID exists. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

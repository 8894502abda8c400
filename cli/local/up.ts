/**
 * `sluice local up`: starts a local cluster on this machine: the agent as a
 * background process on the local datastore, the CNI plugin installed as
 * `sluice` in the cluster's CNI bin directory, and a conflist naming it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentRequest } from '../../contract/client.ts';
import { AGENT_DEFAULTS } from '../../agent/flags.ts';
import { DEL_QUEUE_SUBDIR } from '../../contract/del-queue.ts';
import type { StatusResponse } from '../../contract/api-types.ts';
import type { RoutingMode } from '../../agent/routing/plan.ts';
import { clusterDir, datastoreOf, defaultCniBinary, loadCluster, processAlive, saveCluster, selfCommand, type ClusterConfig, type LocalNode } from './cluster.ts';
import { clusterNodes, DEFAULT_NODE_PREFIX, nodeObject, planNodes } from './nodes.ts';
import { createNodeNetwork, createUnderlay, inNodeNetns } from './nodes-network.ts';

const AGENT_READY_TIMEOUT_MS = 20_000;
const AGENT_POLL_INTERVAL_MS = 50;
/** The cluster pod CIDR a multi-node cluster splits into per-node /24s when `--pod-cidr` is not given. */
const MULTI_NODE_POD_CIDR = '10.244.0.0/16';

/** Options of `local up`; every path has a default so `sluice local up` alone works. */
export interface UpOptions {
  dir?: string;
  name?: string;
  nodeName?: string;
  podCIDRs?: string[];
  socket?: string;
  stateDir?: string;
  bpfDir?: string;
  cniBin?: string;
  agentArgs?: string[];
  /** HOST:PORT for the agent's metrics; default off. */
  metricsAddress?: string;
  /** Nodes (default 1: this host); 2 or more: a network namespace per node, joined by an underlay bridge. */
  nodes?: number;
  /** How pods reach other nodes' pods: native routes (default) or a VXLAN overlay. */
  routing?: RoutingMode;
}

/** Waits until the agent answers on its socket, or its process has died. */
export async function waitForAgent(socket: string, pid: number, logFile: string): Promise<StatusResponse> {
  const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
  for (;;) {
    try {
      return await agentRequest<StatusResponse>(socket, 'GET', '/v1/status');
    } catch {
      if (!processAlive(pid)) throw new Error(`the agent exited during start-up; its log ${logFile} says:\n${tail(logFile)}`);
      if (Date.now() > deadline) throw new Error(`the agent did not answer on ${socket} within ${AGENT_READY_TIMEOUT_MS} ms; see ${logFile}`);
      await new Promise((r) => setTimeout(r, AGENT_POLL_INTERVAL_MS));
    }
  }
}

/** How long `up` waits for an agent that no longer answers (it is stopping) to exit. */
const AGENT_EXIT_TIMEOUT_MS = 20_000;

/**
 * Is this node's agent running and serving? An agent that exists but does not
 * answer is stopping (it closes its API first on SIGTERM) or still starting:
 * wait until it answers (running) or exits (not running), so that `up` never
 * takes a departing agent for a running one.
 */
export async function agentRunning(socket: string, pid: number): Promise<boolean> {
  const deadline = Date.now() + AGENT_EXIT_TIMEOUT_MS;
  while (pid > 0 && processAlive(pid)) {
    try {
      await agentRequest<StatusResponse>(socket, 'GET', '/v1/status');
      return true;
    } catch {
      if (Date.now() > deadline) throw new Error(`the agent (pid ${pid}) neither answers on ${socket} nor exits; stop it, then run up again`);
      await new Promise((r) => setTimeout(r, AGENT_POLL_INTERVAL_MS));
    }
  }
  return false;
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts a node's agent (default: the one node of a one-node cluster) in the background, inside the node's netns; returns its PID. */
export function startAgent(config: ClusterConfig, node: LocalNode = clusterNodes(config)[0]!): number {
  const log = fs.openSync(node.logFile, 'a');
  // nsenter execs the agent: the PID is the agent's.
  const [cmd, ...pre] = [...inNodeNetns(node), ...selfCommand()];
  const args = [...pre, 'agent', '--state-dir', node.stateDir, '--socket', node.socket, '--bpf-dir', node.bpfDir, '--node-name', node.name];
  args.push('--datastore-dir', path.join(config.dir, 'datastore'));
  for (const cidr of node.podCIDRs) args.push('--pod-cidr', cidr);
  if (config.routing) args.push('--routing', config.routing);
  args.push('--metrics-address', config.metricsAddress || '0');
  args.push(...(config.agentArgs ?? []));
  const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  child.unref();
  return child.pid!;
}

/** Brings the cluster up (idempotent when it is already up); returns its config. */
export async function localUp(opts: UpOptions): Promise<ClusterConfig> {
  const dir = clusterDir(opts.dir);
  if (fs.existsSync(path.join(dir, 'cluster.json'))) {
    const existing = loadCluster(dir);
    if (existing.nodes) return restartNodeAgents(existing);
    if (await agentRunning(existing.socket, existing.agentPid)) return existing;
    existing.agentPid = startAgent(existing);
    saveCluster(existing);
    await waitForAgent(existing.socket, existing.agentPid, path.join(dir, 'agent.log'));
    return existing;
  }
  const cniBin = path.resolve(opts.cniBin ?? defaultCniBinary());
  if (!fs.existsSync(cniBin)) throw new Error(`the CNI plugin ${cniBin} does not exist: run 'make' first`);
  const nodeCount = opts.nodes ?? 1;
  const multiNode = nodeCount > 1;
  const config: ClusterConfig = {
    name: opts.name ?? 'sluice',
    dir,
    nodeName: opts.nodeName ?? (multiNode ? DEFAULT_NODE_PREFIX : os.hostname()),
    podCIDRs: opts.podCIDRs?.length ? opts.podCIDRs : [multiNode ? MULTI_NODE_POD_CIDR : AGENT_DEFAULTS.podCIDR],
    socket: opts.socket ?? AGENT_DEFAULTS.socket,
    stateDir: opts.stateDir ?? AGENT_DEFAULTS.stateDir,
    bpfDir: opts.bpfDir ?? AGENT_DEFAULTS.bpfDir,
    agentPid: 0,
    cniBinDir: path.join(dir, 'cni', 'bin'),
    cniConfFile: path.join(dir, 'cni', 'net.d', '10-sluice.conflist'),
    agentArgs: opts.agentArgs ?? [],
    metricsAddress: opts.metricsAddress ?? '0',
    ...(opts.routing ? { routing: opts.routing } : {}),
  };
  if (multiNode) {
    const plan = planNodes({ ...config, nodePrefix: config.nodeName }, nodeCount, opts.routing ?? 'native');
    Object.assign(config, plan);
    // The first node stands for the cluster where one name is expected (`up`'s summary line).
    config.nodeName = plan.nodes[0]!.name;
  }
  fs.mkdirSync(config.cniBinDir, { recursive: true, mode: 0o700 });
  // Runtimes find a plugin by its `type` in the CNI bin directory.
  fs.rmSync(path.join(config.cniBinDir, 'sluice'), { force: true });
  fs.symlinkSync(cniBin, path.join(config.cniBinDir, 'sluice'));
  const nodes = clusterNodes(config);
  for (const node of nodes) writeConflist(node, dir);

  const store = datastoreOf(config);
  for (const node of nodes) store.put(nodeObject(node));
  store.put({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'default', labels: { 'kubernetes.io/metadata.name': 'default' } },
  });

  saveCluster(config);
  if (config.nodes) {
    // Saved first: `down` removes whatever part of this was built when a step fails.
    await createUnderlay(config.underlay!);
    for (const [i, node] of config.nodes.entries()) await createNodeNetwork(node, i + 1, config.underlay!);
    return restartNodeAgents(config);
  }
  config.agentPid = startAgent(config);
  saveCluster(config);
  await waitForAgent(config.socket, config.agentPid, path.join(dir, 'agent.log'));
  return config;
}

/** The node's conflist: the sluice plugin, told the node agent's socket and DEL queue when they are not the defaults. */
function writeConflist(node: LocalNode, dir: string): void {
  const conflist = {
    cniVersion: '1.1.0',
    name: 'sluice',
    // The standard fields are enough against the default socket; name another only when used.
    plugins: [
      {
        type: 'sluice',
        ...(node.socket === AGENT_DEFAULTS.socket ? {} : { socket: node.socket }),
        // DEL queues releases here while the agent is down; the agent drains <state-dir>/del-queue.
        ...(node.stateDir === AGENT_DEFAULTS.stateDir ? {} : { delQueueDir: path.join(node.stateDir, DEL_QUEUE_SUBDIR) }),
        logFile: path.join(dir, 'cni.log'),
      },
    ],
  };
  fs.mkdirSync(path.dirname(node.cniConfFile), { recursive: true });
  fs.writeFileSync(node.cniConfFile, JSON.stringify(conflist, null, 2) + '\n');
}

/** Starts the agent of every node whose agent is not running, and waits for all of them. */
async function restartNodeAgents(config: ClusterConfig): Promise<ClusterConfig> {
  const running = await Promise.all((config.nodes ?? []).map((node) => agentRunning(node.socket, node.agentPid)));
  const started = (config.nodes ?? []).filter((_, i) => !running[i]);
  for (const node of started) node.agentPid = startAgent(config, node);
  saveCluster(config);
  await Promise.all(started.map((node) => waitForAgent(node.socket, node.agentPid, node.logFile)));
  return config;
}

/**
 * `sluice local up`: starts a local cluster on this machine: the agent as a
 * background process on the local datastore, the CNI plugin installed as
 * `sluice` in the cluster's CNI bin directory, and a conflist naming it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentRequest } from '../../agent/client.ts';
import { AGENT_DEFAULTS } from '../../agent/main.ts';
import { DEL_QUEUE_SUBDIR } from '../../agent/del-queue.ts';
import type { StatusResponse } from '../../agent/api-types.ts';
import { clusterDir, datastoreOf, defaultCniBinary, loadCluster, processAlive, saveCluster, selfCommand, type ClusterConfig } from './cluster.ts';

const AGENT_READY_TIMEOUT_MS = 20_000;
const AGENT_POLL_INTERVAL_MS = 50;

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

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts the cluster's agent in the background; returns its PID. */
export function startAgent(config: ClusterConfig): number {
  const logFile = path.join(config.dir, 'agent.log');
  const log = fs.openSync(logFile, 'a');
  const [cmd, ...pre] = selfCommand();
  const args = [...pre, 'agent', '--state-dir', config.stateDir, '--socket', config.socket, '--bpf-dir', config.bpfDir, '--node-name', config.nodeName];
  args.push('--datastore-dir', path.join(config.dir, 'datastore'));
  for (const cidr of config.podCIDRs) args.push('--pod-cidr', cidr);
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
    if (processAlive(existing.agentPid)) return existing;
    existing.agentPid = startAgent(existing);
    saveCluster(existing);
    await waitForAgent(existing.socket, existing.agentPid, path.join(dir, 'agent.log'));
    return existing;
  }
  const cniBin = path.resolve(opts.cniBin ?? defaultCniBinary());
  if (!fs.existsSync(cniBin)) throw new Error(`the CNI plugin ${cniBin} does not exist: run 'make' first`);
  const config: ClusterConfig = {
    name: opts.name ?? 'sluice',
    dir,
    nodeName: opts.nodeName ?? os.hostname(),
    podCIDRs: opts.podCIDRs?.length ? opts.podCIDRs : [AGENT_DEFAULTS.podCIDR],
    socket: opts.socket ?? AGENT_DEFAULTS.socket,
    stateDir: opts.stateDir ?? AGENT_DEFAULTS.stateDir,
    bpfDir: opts.bpfDir ?? AGENT_DEFAULTS.bpfDir,
    agentPid: 0,
    cniBinDir: path.join(dir, 'cni', 'bin'),
    cniConfFile: path.join(dir, 'cni', 'net.d', '10-sluice.conflist'),
    agentArgs: opts.agentArgs ?? [],
  };
  fs.mkdirSync(config.cniBinDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.dirname(config.cniConfFile), { recursive: true });
  // Runtimes find a plugin by its `type` in the CNI bin directory.
  fs.rmSync(path.join(config.cniBinDir, 'sluice'), { force: true });
  fs.symlinkSync(cniBin, path.join(config.cniBinDir, 'sluice'));
  const conflist = {
    cniVersion: '1.1.0',
    name: 'sluice',
    // The standard fields are enough against the default socket; name another only when used.
    plugins: [
      {
        type: 'sluice',
        ...(config.socket === AGENT_DEFAULTS.socket ? {} : { socket: config.socket }),
        // DEL queues releases here while the agent is down; the agent drains <state-dir>/del-queue.
        ...(config.stateDir === AGENT_DEFAULTS.stateDir ? {} : { delQueueDir: path.join(config.stateDir, DEL_QUEUE_SUBDIR) }),
        logFile: path.join(dir, 'cni.log'),
      },
    ],
  };
  fs.writeFileSync(config.cniConfFile, JSON.stringify(conflist, null, 2) + '\n');

  const store = datastoreOf(config);
  store.put({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: config.nodeName, labels: { 'kubernetes.io/hostname': config.nodeName } },
    spec: { podCIDR: config.podCIDRs[0], podCIDRs: config.podCIDRs },
  });
  store.put({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'default', labels: { 'kubernetes.io/metadata.name': 'default' } },
  });

  saveCluster(config);
  config.agentPid = startAgent(config);
  saveCluster(config);
  await waitForAgent(config.socket, config.agentPid, path.join(dir, 'agent.log'));
  return config;
}

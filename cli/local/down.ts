/**
 * `sluice local down`: removes everything the local cluster made: pods (CNI
 * DEL, netns), the agent process (by the PID `up` recorded), the pinned
 * datapath, the state directory, the socket and the cluster directory.
 */
import fs from 'node:fs';
import { removeDatapath } from '../../datapath/loader.ts';
import { clusterDir, datastoreOf, loadCluster, NETNS_DIR, processAlive } from './cluster.ts';
import { deletePod, stopServers } from './pods.ts';
import { removeNetns } from './nodes-network.ts';
import { run } from './run.ts';
import { errorMessage } from '../../lib/errors.ts';

const AGENT_STOP_TIMEOUT_MS = 5_000;

/** Stops the process we started with SIGTERM, then SIGKILL after a grace period. */
export async function stopProcess(pid: number): Promise<void> {
  if (pid <= 0 || !processAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + AGENT_STOP_TIMEOUT_MS;
  while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  if (processAlive(pid)) process.kill(pid, 'SIGKILL');
}

/** Tears the cluster down; returns the problems met (each already worked around). */
export async function localDown(dirFlag?: string): Promise<string[]> {
  const dir = clusterDir(dirFlag);
  if (!fs.existsSync(`${dir}/cluster.json`)) return [];
  const config = loadCluster(dir);
  const problems: string[] = [];
  for (const pod of datastoreOf(config).list('Pod')) {
    const ref = `${pod.metadata.namespace}/${pod.metadata.name}`;
    try {
      await deletePod(config, ref);
    } catch (err: unknown) {
      problems.push(`delete pod ${ref}: ${errorMessage(err)}`);
      stopServers(pod);
      // The agent may be gone: remove the netns so the veth pair goes with it.
      const netns = pod.metadata.annotations?.['sluice.dev/netns'];
      if (netns && fs.existsSync(`${NETNS_DIR}/${netns}`)) await run('ip', ['netns', 'del', netns]).catch(() => undefined);
    }
  }
  for (const node of config.nodes ?? []) {
    await stopProcess(node.agentPid);
    removeDatapath(node.bpfDir);
    fs.rmSync(node.socket, { force: true });
    fs.rmSync(node.stateDir, { recursive: true, force: true });
  }
  await stopProcess(config.agentPid);
  removeDatapath(config.bpfDir);
  fs.rmSync(config.socket, { force: true });
  fs.rmSync(config.stateDir, { recursive: true, force: true });
  // A node's namespace takes its interfaces with it: underlay veth, VXLAN device, routes.
  for (const netns of [...(config.nodes ?? []).map((n) => n.netns), config.underlay?.netns]) {
    if (netns) await removeNetns(netns).catch((err: unknown) => problems.push(`remove netns ${netns}: ${errorMessage(err)}`));
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return problems;
}

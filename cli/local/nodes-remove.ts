/**
 * `sluice local node delete <name>`: a node leaves a multi-node cluster as a
 * drained and deleted Kubernetes node would: its pods are deleted (CNI DEL in
 * its namespace), its agent stops, its pins, state and socket go, its Node
 * object goes (the other agents then drop their routes to it and its address
 * from their ipcache), and its namespace goes with its interfaces. Pods on
 * the other nodes are not touched.
 */
import fs from 'node:fs';
import { removeDatapath } from '../../datapath/loader.ts';
import { datastoreOf, saveCluster, type ClusterConfig } from './cluster.ts';
import { stopProcess } from './down.ts';
import { nodeByName } from './nodes.ts';
import { removeNetns } from './nodes-network.ts';
import { deletePod } from './pods.ts';

/** Removes the node and its pods; returns the refs of the pods deleted with it. */
export async function removeNode(config: ClusterConfig, name: string): Promise<string[]> {
  const node = nodeByName(config, name);
  if (!config.nodes || !node.netns) throw new Error(`node ${name} is this host: remove the whole cluster with 'sluice local down'`);
  if (config.nodes.length === 1) throw new Error(`node ${name} is the cluster's last node: remove the cluster with 'sluice local down'`);
  const store = datastoreOf(config);
  const pods = store.list('Pod').filter((p) => (p.spec as { nodeName?: string } | undefined)?.nodeName === name);
  const refs = pods.map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
  for (const ref of refs) await deletePod(config, ref);
  await stopProcess(node.agentPid);
  removeDatapath(node.bpfDir);
  fs.rmSync(node.socket, { force: true });
  fs.rmSync(node.stateDir, { recursive: true, force: true });
  store.delete('Node', name);
  await removeNetns(node.netns);
  config.nodes = config.nodes.filter((n) => n.name !== name);
  config.nodeName = config.nodes[0]!.name;
  saveCluster(config);
  return refs;
}

/**
 * The local cluster's kubelet: a pod is a network namespace bind-mounted under
 * /var/run/netns, wired by running the CNI plugins of the cluster's conflist
 * exactly as a container runtime does, and recorded in the local datastore.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { KubeObject } from '../../agent/datastore/local.ts';
import { datastoreOf, NETNS_DIR, podNetnsName, selfCommand, type ClusterConfig } from './cluster.ts';
import { execConflist, type CniInvocation } from './cni-exec.ts';
import { run } from './run.ts';
import { nodeOfPod, scheduleNode } from './nodes.ts';
import { inNodeNetns } from './nodes-network.ts';

/** The pod's interface name inside its namespace, as kubelet uses. */
const POD_IFNAME = 'eth0';
const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const MAX_NAME_LENGTH = 63;

/** Splits "ns/name" (or "name", in namespace default) and validates both as DNS labels. */
export function parsePodRef(ref: string): { namespace: string; name: string } {
  const [namespace, name] = ref.includes('/') ? (ref.split('/', 2) as [string, string]) : ['default', ref];
  for (const part of [namespace, name]) {
    if (!NAME_RE.test(part) || part.length > MAX_NAME_LENGTH) {
      throw new Error(`'${ref}' is not a valid pod reference: use <namespace>/<name> with lowercase letters, digits and '-'`);
    }
  }
  return { namespace, name };
}

function cniArgs(pod: KubeObject, containerID: string): Record<string, string> {
  return {
    IgnoreUnknown: '1',
    K8S_POD_NAMESPACE: pod.metadata.namespace!,
    K8S_POD_NAME: pod.metadata.name,
    K8S_POD_INFRA_CONTAINER_ID: containerID,
    K8S_POD_UID: pod.metadata.uid ?? '',
  };
}

function invocation(pod: KubeObject, command: CniInvocation['command']): CniInvocation {
  const annotations = pod.metadata.annotations ?? {};
  const containerID = annotations['sluice.dev/container-id']!;
  return {
    command,
    containerID,
    netns: path.join(NETNS_DIR, annotations['sluice.dev/netns']!),
    ifname: POD_IFNAME,
    args: cniArgs(pod, containerID),
  };
}

/** A container port as a Pod manifest declares it. */
export interface ManifestPort {
  name?: string;
  containerPort: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
}

/** The container ports of a Pod object, in declaration order. */
export function containerPorts(pod: KubeObject): ManifestPort[] {
  const containers = ((pod.spec ?? {}) as { containers?: { ports?: ManifestPort[] }[] }).containers ?? [];
  return containers.flatMap((c) => c.ports ?? []);
}

/** Starts the pod's "containers": an echo server on each declared TCP and UDP port, inside its netns. */
function startServers(netnsName: string, ports: ManifestPort[]): number | null {
  const served = ports.filter((p) => (p.protocol ?? 'TCP') !== 'SCTP').map((p) => `${p.containerPort}/${p.protocol ?? 'TCP'}`);
  if (served.length === 0) return null;
  const [cmd, ...pre] = selfCommand();
  const child = spawn('ip', ['netns', 'exec', netnsName, cmd!, ...pre, 'local', 'serve', '--ports', served.join(',')], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return child.pid ?? null;
}

/** Stops the pod's servers: only the PID we started, and only while it still runs our server. */
export function stopServers(pod: KubeObject): void {
  const pid = Number(pod.metadata.annotations?.['sluice.dev/server-pid'] ?? 0);
  if (pid <= 0) return;
  let cmdline = '';
  try {
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return;
  }
  // `ip netns exec` execs the server, so its command line does not name the netns: compare namespaces instead.
  if (cmdline.includes('serve') && inPodNetns(pid, String(pod.metadata.annotations?.['sluice.dev/netns']))) {
    process.kill(pid, 'SIGKILL');
  }
}

function inPodNetns(pid: number, netnsName: string): boolean {
  try {
    return fs.statSync(`/proc/${pid}/ns/net`).ino === fs.statSync(path.join(NETNS_DIR, netnsName)).ino;
  } catch {
    return false;
  }
}

/**
 * Creates the pod from its manifest as a kubelet would: the Pod is recorded
 * first (Pending, as the API server has it before the sandbox exists), then
 * netns, CNI ADD, servers for its ports, and the record updated to Running
 * with its addresses. A failure removes the netns and the record.
 */
export async function createPodFromManifest(config: ClusterConfig, manifest: KubeObject): Promise<KubeObject> {
  const { namespace, name } = parsePodRef(`${manifest.metadata.namespace ?? 'default'}/${manifest.metadata.name}`);
  const store = datastoreOf(config);
  if (store.get('Pod', name, namespace)) throw new Error(`pod ${namespace}/${name} already exists`);
  if (!store.get('Namespace', namespace)) throw new Error(`namespace ${namespace} does not exist: create it first`);
  const netnsName = podNetnsName(config, namespace, name);
  const spec = (manifest.spec ?? {}) as Record<string, unknown>;
  const node = scheduleNode(config, typeof spec.nodeName === 'string' ? spec.nodeName : undefined, store.list('Pod'));
  const pod: KubeObject = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      namespace,
      name,
      uid: randomUUID(),
      labels: manifest.metadata.labels ?? {},
      annotations: {
        ...(manifest.metadata.annotations ?? {}),
        'sluice.dev/netns': netnsName,
        'sluice.dev/container-id': randomBytes(32).toString('hex'),
      },
      creationTimestamp: new Date().toISOString(),
    },
    spec: { ...spec, nodeName: node.name, containers: (spec.containers as unknown[] | undefined) ?? [{ name: 'main', image: 'none' }] },
    status: { phase: 'Pending' },
  };
  store.put(pod);
  try {
    await run('ip', ['netns', 'add', netnsName]);
    await run('ip', ['-n', netnsName, 'link', 'set', 'lo', 'up']);
    // The CNI plugin runs where kubelet would: in the node's network namespace.
    const result = (await execConflist(node.cniConfFile, config.cniBinDir, invocation(pod, 'ADD'), inNodeNetns(node))) as {
      ips?: { address: string }[];
    };
    const ips = (result.ips ?? []).map((ip) => ip.address.split('/')[0]!);
    const serverPid = startServers(netnsName, containerPorts(pod));
    if (serverPid) pod.metadata.annotations!['sluice.dev/server-pid'] = String(serverPid);
    pod.status = { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) };
    store.put(pod);
    return pod;
  } catch (err: unknown) {
    await run('ip', ['netns', 'del', netnsName]).catch(() => undefined);
    store.delete('Pod', name, namespace);
    throw err;
  }
}

/** Creates a pod with only a name and labels (`sluice local pod create`); its namespace is created when missing. */
export async function createPod(config: ClusterConfig, ref: string, labels: Record<string, string>, nodeName?: string): Promise<KubeObject> {
  const { namespace, name } = parsePodRef(ref);
  const store = datastoreOf(config);
  if (!store.get('Namespace', namespace)) {
    store.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels: { 'kubernetes.io/metadata.name': namespace } } });
  }
  return createPodFromManifest(config, { apiVersion: 'v1', kind: 'Pod', metadata: { namespace, name, labels }, ...(nodeName ? { spec: { nodeName } } : {}) });
}

/** Deletes the pod: CNI DEL, servers stopped, netns removed, record removed. Returns false when there is no such pod. */
export async function deletePod(config: ClusterConfig, ref: string): Promise<boolean> {
  const { namespace, name } = parsePodRef(ref);
  const store = datastoreOf(config);
  const pod = store.get('Pod', name, namespace);
  if (!pod) return false;
  const inv = invocation(pod, 'DEL');
  const node = nodeOfPod(config, pod);
  await execConflist(node.cniConfFile, config.cniBinDir, inv, inNodeNetns(node));
  stopServers(pod);
  if (fs.existsSync(inv.netns)) await run('ip', ['netns', 'del', path.basename(inv.netns)]);
  store.delete('Pod', name, namespace);
  return true;
}

/** Kubernetes-style list of the cluster's objects of a kind, for `get -o json`. */
export function listObjects(config: ClusterConfig, kind: 'Pod' | 'Node' | 'Namespace' | 'Service'): { apiVersion: string; kind: string; items: KubeObject[] } {
  return { apiVersion: 'v1', kind: 'List', items: datastoreOf(config).list(kind) };
}

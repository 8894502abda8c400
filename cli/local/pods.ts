/**
 * The local cluster's kubelet: a pod is a network namespace bind-mounted under
 * /var/run/netns, wired by running the CNI plugins of the cluster's conflist
 * exactly as a container runtime does, and recorded in the local datastore.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { KubeObject } from '../../agent/local-datastore.ts';
import { datastoreOf, NETNS_DIR, podNetnsName, type ClusterConfig } from './cluster.ts';
import { execConflist, type CniInvocation } from './cni-exec.ts';
import { run } from './run.ts';

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

/** Creates the pod: netns, CNI ADD, datastore record. Rolls back the netns when ADD fails. */
export async function createPod(config: ClusterConfig, ref: string, labels: Record<string, string>): Promise<KubeObject> {
  const { namespace, name } = parsePodRef(ref);
  const store = datastoreOf(config);
  if (store.get('Pod', name, namespace)) throw new Error(`pod ${namespace}/${name} already exists`);
  if (!store.get('Namespace', namespace)) {
    store.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels: { 'kubernetes.io/metadata.name': namespace } } });
  }
  const netnsName = podNetnsName(config, namespace, name);
  const pod: KubeObject = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      namespace,
      name,
      uid: randomUUID(),
      labels,
      annotations: { 'sluice.dev/netns': netnsName, 'sluice.dev/container-id': randomBytes(32).toString('hex') },
      creationTimestamp: new Date().toISOString(),
    },
    spec: { nodeName: config.nodeName, containers: [{ name: 'main', image: 'none' }] },
    status: { phase: 'Pending' },
  };
  await run('ip', ['netns', 'add', netnsName]);
  try {
    await run('ip', ['-n', netnsName, 'link', 'set', 'lo', 'up']);
    const result = (await execConflist(config.cniConfFile, config.cniBinDir, invocation(pod, 'ADD'))) as {
      ips?: { address: string }[];
    };
    const ips = (result.ips ?? []).map((ip) => ip.address.split('/')[0]!);
    pod.status = { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) };
    store.put(pod);
    return pod;
  } catch (err: unknown) {
    await run('ip', ['netns', 'del', netnsName]).catch(() => undefined);
    throw err;
  }
}

/** Deletes the pod: CNI DEL, netns removed, record removed. Returns false when there is no such pod. */
export async function deletePod(config: ClusterConfig, ref: string): Promise<boolean> {
  const { namespace, name } = parsePodRef(ref);
  const store = datastoreOf(config);
  const pod = store.get('Pod', name, namespace);
  if (!pod) return false;
  const inv = invocation(pod, 'DEL');
  await execConflist(config.cniConfFile, config.cniBinDir, inv);
  if (fs.existsSync(inv.netns)) await run('ip', ['netns', 'del', path.basename(inv.netns)]);
  store.delete('Pod', name, namespace);
  return true;
}

/** Kubernetes-style list of the cluster's objects of a kind, for `get -o json`. */
export function listObjects(config: ClusterConfig, kind: 'Pod' | 'Node' | 'Namespace'): { apiVersion: string; kind: string; items: KubeObject[] } {
  return { apiVersion: 'v1', kind: 'List', items: datastoreOf(config).list(kind) };
}

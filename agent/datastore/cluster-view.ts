/**
 * Kubernetes objects → the policy compiler's ClusterView. The one place that
 * knows the API's field names; everything above works on policy/types.ts.
 */
import type { KubeObject } from './local.ts';
import type { ObjectChanges } from './change-feed.ts';
import { checkPolicy, type CheckedPolicy } from '../../policy/policy-check.ts';
import type { ClusterChanges, ClusterView, ContainerPort, PolicyPod } from '../../policy/types.ts';

/** The objects a datastore holds. */
export interface ClusterObjects {
  pods: KubeObject[];
  namespaces: KubeObject[];
  networkPolicies: KubeObject[];
  nodes: KubeObject[];
  /** v1 Services; absent: a datastore that keeps none. */
  services?: KubeObject[];
  /** v1 Endpoints (Kubernetes only: the local cluster derives endpoints from its pods). */
  endpoints?: KubeObject[];
  /** discovery.k8s.io/v1beta1 EndpointSlices (Kubernetes only). */
  endpointSlices?: KubeObject[];
  /** The pods may lag behind the node's endpoints (see ClusterView.isolateUnknownPods): set by the Kubernetes datastore. */
  isolateUnknownPods?: boolean;
}

/** Shared by every pod without container ports (most of the cluster's, to a node: it keeps one PolicyPod per pod). */
const NO_PORTS: ContainerPort[] = [];

function podOf(obj: KubeObject): PolicyPod {
  const spec = (obj.spec ?? {}) as { containers?: { ports?: ContainerPort[] }[] };
  const status = (obj.status ?? {}) as { podIPs?: { ip: string }[]; podIP?: string };
  const ips = status.podIPs?.map((p) => p.ip) ?? (status.podIP ? [status.podIP] : []);
  // Arrays built by push keep room to grow (about 140 bytes for one port): copied to their size.
  const ports = (spec.containers ?? []).flatMap((c) => c.ports ?? []).filter(isContainerPort);
  return {
    namespace: obj.metadata.namespace ?? 'default',
    name: obj.metadata.name,
    labels: obj.metadata.labels ?? {},
    ips,
    ports: ports.length === 0 ? NO_PORTS : ports.slice(),
  };
}

/** Read once per object, like policies: the incremental compiler then finds an unchanged pod by identity (policy/incremental.ts). */
const PODS = new WeakMap<KubeObject, PolicyPod>();

function memoPodOf(obj: KubeObject): PolicyPod {
  let pod = PODS.get(obj);
  if (!pod) PODS.set(obj, (pod = podOf(obj)));
  return pod;
}

/** A container port a named port can resolve to; any other (not from an API server) is left out, so names resolving to it allow nothing. */
function isContainerPort(p: ContainerPort): boolean {
  return Number.isInteger(p?.containerPort) && p.containerPort >= 1 && p.containerPort <= 65535 && (p.protocol === undefined || ['TCP', 'UDP', 'SCTP'].includes(p.protocol));
}

/** A NetworkPolicy Sluice cannot compile as written, and what of it fails closed (policy/policy-check.ts). */
export interface PolicyError {
  namespace: string;
  name: string;
  problems: string[];
}

/** Checked once per object: datastores hand back the same object until it changes. */
const CHECKED = new WeakMap<KubeObject, CheckedPolicy>();

function checkedPolicyOf(obj: KubeObject): CheckedPolicy {
  let checked = CHECKED.get(obj);
  if (!checked) CHECKED.set(obj, (checked = checkPolicy(obj.metadata.namespace ?? 'default', obj.metadata.name, obj.spec)));
  return checked;
}

/** The NetworkPolicies that cannot be compiled as written, with why (sorted as the datastore holds them). */
export function policyErrors(objects: ClusterObjects): PolicyError[] {
  return objects.networkPolicies.flatMap((obj) => {
    const { policy, problems } = checkedPolicyOf(obj);
    return problems.length > 0 ? [{ namespace: policy.namespace, name: policy.name, problems }] : [];
  });
}

/** Builds the compiler's view of the cluster from its objects. */
export function clusterView(objects: ClusterObjects): ClusterView {
  return {
    namespaces: new Map(objects.namespaces.map((ns) => [ns.metadata.name, ns.metadata.labels ?? {}])),
    pods: objects.pods.map(memoPodOf),
    policies: objects.networkPolicies.map((obj) => checkedPolicyOf(obj).policy),
    ...(objects.isolateUnknownPods ? { isolateUnknownPods: true } : {}),
  };
}

/** Splits a namespace/name key (a namespaced object's, as the datastores key them). */
function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0 ? { namespace: 'default', name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** A datastore's object changes as the policy compiler's events (the same reading of each object as clusterView()). */
export function clusterChanges(changes: ObjectChanges): ClusterChanges {
  const out: ClusterChanges = { namespaces: [], pods: [], policies: [] };
  for (const [name, ns] of changes.namespaces) out.namespaces.push({ name, labels: ns ? (ns.metadata.labels ?? {}) : undefined });
  for (const [key, obj] of changes.pods) out.pods.push({ ...splitKey(key), pod: obj ? memoPodOf(obj) : undefined });
  for (const [key, obj] of changes.networkPolicies) out.policies.push({ ...splitKey(key), policy: obj ? checkedPolicyOf(obj).policy : undefined });
  return out;
}

/** A cluster node as routing reads it: its pod CIDRs and its InternalIP addresses. */
export interface ClusterNode {
  name: string;
  podCIDRs: string[];
  internalIPs: string[];
}

/** The nodes of the cluster: Node.spec.podCIDRs (or spec.podCIDR) and the InternalIPs of Node.status.addresses. */
export function clusterNodes(objects: ClusterObjects): ClusterNode[] {
  return objects.nodes.map((obj) => {
    const spec = (obj.spec ?? {}) as { podCIDR?: string; podCIDRs?: string[] };
    const status = (obj.status ?? {}) as { addresses?: { type?: string; address?: string }[] };
    return {
      name: obj.metadata.name,
      podCIDRs: spec.podCIDRs?.length ? spec.podCIDRs : spec.podCIDR ? [spec.podCIDR] : [],
      internalIPs: (status.addresses ?? []).filter((a) => a.type === 'InternalIP' && typeof a.address === 'string').map((a) => a.address!),
    };
  });
}

/** Every node's InternalIPs: the ipcache gives those of other nodes the remote-node identity. */
export function nodeAddresses(objects: ClusterObjects): string[] {
  return clusterNodes(objects).flatMap((n) => n.internalIPs);
}

/** An empty cluster: the agent without a datastore (CNI and IPAM only, no policies). */
export const EMPTY_OBJECTS: ClusterObjects = { pods: [], namespaces: [], networkPolicies: [], nodes: [] };

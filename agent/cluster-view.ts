/**
 * Kubernetes objects → the policy compiler's ClusterView. The one place that
 * knows the API's field names; everything above works on policy/types.ts.
 */
import type { KubeObject } from './local-datastore.ts';
import type { ClusterView, ContainerPort, NetworkPolicy, PolicyPod } from '../policy/types.ts';

/** The objects a datastore holds. */
export interface ClusterObjects {
  pods: KubeObject[];
  namespaces: KubeObject[];
  networkPolicies: KubeObject[];
  nodes: KubeObject[];
}

function podOf(obj: KubeObject): PolicyPod {
  const spec = (obj.spec ?? {}) as { containers?: { ports?: ContainerPort[] }[] };
  const status = (obj.status ?? {}) as { podIPs?: { ip: string }[]; podIP?: string };
  const ips = status.podIPs?.map((p) => p.ip) ?? (status.podIP ? [status.podIP] : []);
  return {
    namespace: obj.metadata.namespace ?? 'default',
    name: obj.metadata.name,
    labels: obj.metadata.labels ?? {},
    ips,
    ports: (spec.containers ?? []).flatMap((c) => c.ports ?? []),
  };
}

function policyOf(obj: KubeObject): NetworkPolicy {
  const spec = (obj.spec ?? {}) as Omit<NetworkPolicy, 'namespace' | 'name'>;
  return { ...spec, podSelector: spec.podSelector ?? {}, namespace: obj.metadata.namespace ?? 'default', name: obj.metadata.name };
}

/** Builds the compiler's view of the cluster from its objects. */
export function clusterView(objects: ClusterObjects): ClusterView {
  return {
    namespaces: new Map(objects.namespaces.map((ns) => [ns.metadata.name, ns.metadata.labels ?? {}])),
    pods: objects.pods.map(podOf),
    policies: objects.networkPolicies.map(policyOf),
  };
}

/** An empty cluster: the agent without a datastore (CNI and IPAM only, no policies). */
export const EMPTY_OBJECTS: ClusterObjects = { pods: [], namespaces: [], networkPolicies: [], nodes: [] };

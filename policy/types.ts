/**
 * The slice of the Kubernetes API the policy compiler reads: label
 * selectors, NetworkPolicy (networking.k8s.io/v1), and what it needs of pods
 * and namespaces. Pure data, no I/O.
 */

/** metav1.LabelSelectorRequirement. */
export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

/** metav1.LabelSelector: both parts must match; an empty selector matches everything. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** networking.k8s.io/v1 IPBlock. */
export interface IPBlock {
  cidr: string;
  except?: string[];
}

/** networking.k8s.io/v1 NetworkPolicyPeer. */
export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IPBlock;
}

/** networking.k8s.io/v1 NetworkPolicyPort. */
export interface NetworkPolicyPort {
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  port?: number | string;
  endPort?: number;
}

/** An ingress or egress rule (from/to are the peers). */
export interface NetworkPolicyRule {
  ports?: NetworkPolicyPort[];
  from?: NetworkPolicyPeer[];
  to?: NetworkPolicyPeer[];
}

/** networking.k8s.io/v1 NetworkPolicy, as far as enforcement goes. */
export interface NetworkPolicy {
  namespace: string;
  name: string;
  podSelector: LabelSelector;
  policyTypes?: ('Ingress' | 'Egress')[];
  ingress?: NetworkPolicyRule[];
  egress?: NetworkPolicyRule[];
}

/** A named container port. */
export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
}

/** A pod as policy sees it. */
export interface PolicyPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** Plain addresses, both families. */
  ips: string[];
  ports: ContainerPort[];
}

/** Everything the compiler reads about the cluster. */
export interface ClusterView {
  /** Namespace name → its labels. */
  namespaces: Map<string, Record<string, string>>;
  pods: PolicyPod[];
  policies: NetworkPolicy[];
  /**
   * True when pods (and namespaces) can lag behind the local endpoints (a
   * Kubernetes watch behind a CNI ADD): a local endpoint whose pod or
   * namespace is not here yet is isolated in both directions until it is,
   * never compiled with guessed (empty) labels. Absent: such an endpoint is
   * an unlabelled pod (no datastore, or the local cluster, which writes the
   * pod before its ADD).
   */
  isolateUnknownPods?: boolean;
}

/**
 * What changed in the cluster since a compiler last read it, object by
 * object (the datastore's watch events, coalesced per object): undefined
 * means gone. The incremental compiler takes these instead of a whole
 * ClusterView, so one event costs what it changes, not a walk of the cluster.
 */
export interface ClusterChanges {
  namespaces: { name: string; labels: Record<string, string> | undefined }[];
  pods: { namespace: string; name: string; pod: PolicyPod | undefined }[];
  policies: { namespace: string; name: string; policy: NetworkPolicy | undefined }[];
}

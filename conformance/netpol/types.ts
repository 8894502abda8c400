/**
 * The objects the suite writes and reasons about: NetworkPolicy v1 as the
 * Kubernetes API defines it (networking.k8s.io/v1), written here from the API
 * reference so the suite shares nothing with Sluice's own policy/ types.
 */

/** A label selector requirement (matchExpressions item). */
export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

/** A label selector; an empty one selects everything. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** An address range with holes. */
export interface IPBlock {
  cidr: string;
  except?: string[];
}

/** One peer of a rule: selectors, or an address block. */
export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IPBlock;
}

/** One port of a rule: a number (optionally a range up to endPort), a name, or every port of a protocol. */
export interface NetworkPolicyPort {
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  port?: number | string;
  endPort?: number;
}

/** An ingress rule: traffic from any of `from`, to any of `ports`. */
export interface IngressRule {
  from?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

/** An egress rule: traffic to any of `to`, on any of `ports`. */
export interface EgressRule {
  to?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

/** The spec of a NetworkPolicy. */
export interface NetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes?: ('Ingress' | 'Egress')[];
  ingress?: IngressRule[];
  egress?: EgressRule[];
}

/** A NetworkPolicy manifest. */
export interface NetworkPolicy {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'NetworkPolicy';
  metadata: { name: string; namespace: string };
  spec: NetworkPolicySpec;
}

/** A Namespace manifest. */
export interface NamespaceManifest {
  apiVersion: 'v1';
  kind: 'Namespace';
  metadata: { name: string; labels: Record<string, string> };
}

/** A container port as a Pod declares it. */
export interface ContainerPort {
  name: string;
  containerPort: number;
  protocol: 'TCP' | 'UDP';
}

/** A Pod manifest. */
export interface PodManifest {
  apiVersion: 'v1';
  kind: 'Pod';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: { containers: { name: string; image: string; ports: ContainerPort[] }[] };
}

/** Any object the suite applies. */
export type Manifest = NetworkPolicy | NamespaceManifest | PodManifest;

/** What delete -f needs of an object. */
export interface ObjectRef {
  kind: 'NetworkPolicy' | 'Pod' | 'Namespace';
  namespace?: string;
  name: string;
}

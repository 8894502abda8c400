/**
 * What a conformance case is: a name, the upstream behaviour it checks, and
 * steps. Each step changes the cluster (apply policies, relabel pods or
 * namespaces, delete policies) and declares the reachability it expects
 * afterwards on every probed (protocol, port) of the 9×9 model.
 */
import type { Reachability } from './reachability.ts';
import type { Manifest, NetworkPolicy, NetworkPolicySpec, ObjectRef } from './types.ts';

/** What a step may read of the running cluster when it builds its manifests. */
export interface CaseContext {
  /** A model pod's address ("x/b" → "10.150.3.4"). */
  ip(pod: string): string;
  /** The cluster's pod CIDR. */
  podCIDR: string;
}

/** One change and the reachability expected after it. */
export interface Step {
  title: string;
  /** Objects to apply (policies, or Namespace/Pod manifests to relabel). */
  apply?: (ctx: CaseContext) => Manifest[];
  /** Objects to delete. */
  delete?: ObjectRef[];
  /** The expected reachability, drawn on a matrix where everything connects. */
  expect: (r: Reachability) => Reachability;
}

/** A fixed conformance case. */
export interface Case {
  name: string;
  /** The upstream e2e behaviour (or spec clause) this case shows. */
  checks: string;
  steps: Step[];
}

/** A NetworkPolicy manifest. */
export function policy(namespace: string, name: string, spec: NetworkPolicySpec): NetworkPolicy {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace }, spec };
}

/** A reference to a NetworkPolicy, for delete steps. */
export function policyRef(namespace: string, name: string): ObjectRef {
  return { kind: 'NetworkPolicy', namespace, name };
}

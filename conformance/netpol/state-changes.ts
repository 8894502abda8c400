/**
 * Keeps the suite's picture of the cluster (labels, policies) in step with
 * what it applies and deletes, so the reference evaluator and the clean-up
 * between cases read the same truth as the agent.
 */
import type { ClusterState } from './model.ts';
import type { Manifest, NetworkPolicy, ObjectRef } from './types.ts';

function samePolicy(a: NetworkPolicy, ns: string | undefined, name: string): boolean {
  return a.metadata.namespace === ns && a.metadata.name === name;
}

/** Records applied objects: policies replace one of the same name, Namespace and Pod manifests set labels. */
export function recordApply(state: ClusterState, objects: Manifest[]): void {
  for (const obj of objects) {
    if (obj.kind === 'NetworkPolicy') {
      state.policies = state.policies.filter((p) => !samePolicy(p, obj.metadata.namespace, obj.metadata.name));
      state.policies.push(structuredClone(obj));
    } else if (obj.kind === 'Namespace') {
      state.namespaces.set(obj.metadata.name, { ...obj.metadata.labels, 'kubernetes.io/metadata.name': obj.metadata.name });
    } else {
      const pod = state.pods.find((p) => p.namespace === obj.metadata.namespace && p.name === obj.metadata.name);
      if (!pod) throw new Error(`the model has no pod ${obj.metadata.namespace}/${obj.metadata.name}`);
      pod.labels = { ...obj.metadata.labels };
    }
  }
}

/** Records deleted policies (the suite never deletes model pods or namespaces). */
export function recordDelete(state: ClusterState, refs: ObjectRef[]): void {
  for (const ref of refs) {
    if (ref.kind !== 'NetworkPolicy') throw new Error(`the suite only deletes NetworkPolicies, not ${ref.kind}`);
    state.policies = state.policies.filter((p) => !samePolicy(p, ref.namespace, ref.name));
  }
}

/**
 * Fail closed for a pod whose labels are not known yet. With the Kubernetes
 * datastore a CNI ADD can come before the watch delivers its pod (a slow API
 * server, a cache behind), and which policies select a pod depends on its
 * labels: compiled with none, it would run unisolated until they arrive. So
 * such an endpoint is isolated in both directions, with no allow entries,
 * until the view holds its pod and its namespace; the next sync then switches
 * it to its real policy atomically (agent/policy-sync/maps.ts, two slots).
 * Pure: applied to what any compiler made of the view.
 */
import type { CompiledEndpoint, CompiledState, LocalEndpoint } from './compile.ts';
import type { ClusterView } from './types.ts';

/** The local endpoints whose pod or namespace the view does not hold, when it says they are isolated (ClusterView.isolateUnknownPods). */
export function endpointsWithUnknownLabels(view: ClusterView, local: LocalEndpoint[]): Set<number> {
  const unknown = new Set<number>();
  if (!view.isolateUnknownPods || local.length === 0) return unknown;
  const known = new Set(view.pods.map((p) => `${p.namespace}/${p.name}`));
  for (const ep of local) {
    if (!known.has(`${ep.namespace}/${ep.pod}`) || !view.namespaces.has(ep.namespace)) unknown.add(ep.endpointId);
  }
  return unknown;
}

/** The same, as "namespace/pod" of each such endpoint (for explanations). */
export function podsWithUnknownLabels(view: ClusterView, local: LocalEndpoint[]): Set<string> {
  const ids = endpointsWithUnknownLabels(view, local);
  return new Set(local.filter((ep) => ids.has(ep.endpointId)).map((ep) => `${ep.namespace}/${ep.pod}`));
}

/** Why such a pod's traffic is denied, in the words of sluice explain and the logs. */
export const UNKNOWN_LABELS_REASON = "denied: the datastore has not delivered the pod's labels (or its namespace) yet, so it is isolated both ways until it has";

/** The same isolated endpoint for the same compiled one: the sync then sees it unchanged from one run to the next. */
const isolatedOf = new WeakMap<CompiledEndpoint, CompiledEndpoint>();

/** The endpoint isolated in both directions with no allow entries (its identity kept: the ipcache names its address). */
export function isolatedEndpoint(c: CompiledEndpoint): CompiledEndpoint {
  let out = isolatedOf.get(c);
  if (!out) {
    out = { endpointId: c.endpointId, identity: c.identity, ingressIsolated: true, egressIsolated: true, policies: [], entries: [], cidrEntries: [] };
    isolatedOf.set(c, out);
  }
  return out;
}

/** The compiled state with every endpoint whose labels are unknown isolated both ways (the state itself when there is none). */
export function isolateUnknownPods(view: ClusterView, local: LocalEndpoint[], state: CompiledState): CompiledState {
  const unknown = endpointsWithUnknownLabels(view, local);
  if (unknown.size === 0) return state;
  return { ...state, endpoints: state.endpoints.map((c) => (unknown.has(c.endpointId) ? isolatedEndpoint(c) : c)) };
}

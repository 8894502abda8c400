/** The reference evaluator's reachability for a whole cluster state: every pod pair on every combo. */
import { COMBOS, PODS, parseCombo, type ClusterState } from './model.ts';
import { Reachability } from './reachability.ts';
import { allowed } from './reference-evaluator.ts';

/** What the spec says every probe of the model should see in this state. */
export function expectedByEvaluator(state: ClusterState): Reachability {
  const r = new Reachability(true);
  const podOf = (ref: string) => state.pods.find((p) => `${p.namespace}/${p.name}` === ref)!;
  for (const combo of COMBOS) {
    const { protocol, port } = parseCombo(combo);
    for (const from of PODS) {
      for (const to of PODS) {
        r.set({ from, to, on: [combo] }, allowed({ from: podOf(from), to: podOf(to), protocol, port }, state));
      }
    }
  }
  return r;
}

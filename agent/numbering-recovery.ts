/**
 * The identity numbering after numbering.db was lost or damaged (moved aside
 * by agent/store-check.ts): each label set gets back the number its pods
 * carry in the pinned maps (agent/policy-sync/numbering-rebuild.ts decides),
 * and every number any map still names is held as used. Runs before the
 * first sync, so that it finds the maps as they are and rewrites nothing for
 * pods whose number came back.
 */
import type { Endpoint } from '../contract/api-types.ts';
import { Identity } from '../datapath/abi.ts';
import { podsOf } from '../policy/compile.ts';
import { errorMessage } from '../lib/errors.ts';
import { clusterView } from './datastore/cluster-view.ts';
import type { Datastore } from './datastore/datastore.ts';
import type { KernelNumbers } from './kernel-numbers.ts';
import { MISSING } from './endpoints-recovery.ts';
import { keyedPods, planNumbering, type NumberingPlan } from './policy-sync/numbering-rebuild.ts';
import type { NumberingStore } from './policy-sync/numbering-store.ts';

/** What restoring the numbering reads and writes. */
export interface NumberingRecoveryDeps {
  numbering: Pick<NumberingStore, 'restore'>;
  kernel: KernelNumbers;
  datastore: Pick<Datastore, 'objects' | 'refresh'>;
  /** The local endpoints (their addresses are the compiler's, over the datastore's). */
  endpoints: Endpoint[];
  /** Why the store is rebuilt, for the log ('the damaged store moved aside to ...'). */
  cause: string;
  log: (msg: string) => void;
}

/** Puts back the numbers; returns the plan it applied. */
export function restoreNumbering(deps: NumberingRecoveryDeps): NumberingPlan {
  let plan: NumberingPlan = { adopted: new Map(), retired: [] };
  try {
    deps.datastore.refresh();
    const view = clusterView(deps.datastore.objects());
    const local = deps.endpoints.map((e) => ({ endpointId: e.id, namespace: e.namespace, pod: e.pod, ips: e.ips }));
    plan = planNumbering(keyedPods(podsOf(view, local), view.namespaces), deps.kernel.identityOfAddress);
  } catch (err: unknown) {
    // Without label sets no number can be given back: every set gets a fresh one, above all in use (safe, not seamless).
    deps.log(`identity numbering rebuild: the datastore could not be read (${errorMessage(err)}): every label set gets a new number`);
  }
  const floors = deps.numbering.restore(plan.adopted, { identity: deps.kernel.maxIdentity, selector: deps.kernel.maxSelector });
  // A first start (no store, no number in the maps) has nothing to say.
  if (deps.cause === MISSING && deps.kernel.identityOfAddress.size === 0 && deps.kernel.maxIdentity < Identity.FIRST_POD) return plan;
  const from = deps.cause;
  deps.log(
    `identity numbering rebuilt (${from}): ${plan.adopted.size} label set(s) got back the number their pods carry in the maps; ` +
      `new identities start above ${floors.identity}, new address selectors above ${floors.selector} (the highest the maps hold, or reserved before)`,
  );
  if (plan.retired.length > 0) deps.log(`identity numbering: ${plan.retired.length} number(s) not given back, never handed out again: ${plan.retired.map((r) => `${r.number}: ${r.why}`).join('; ')}`);
  return plan;
}

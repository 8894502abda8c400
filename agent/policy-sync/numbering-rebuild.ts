/**
 * The identity numbers after numbering.db was lost or damaged: which label
 * set had which number, read back from the node (pure; the agent gathers the
 * facts in agent/numbering-recovery.ts).
 *
 * The ipcache (and the endpoint map) say which number each pod address
 * carries; the datastore says which label set each pod has now. A label set
 * gets back a number only when the evidence agrees both ways: every pod of
 * the set carries that number, and no pod of another set does. Anything else
 * (a pod relabelled while the agent was down, two sets on one number) gets a
 * fresh number instead, above every number any map still names: a number
 * handed to another label set than the one the kernel's policy entries and
 * conntrack mean by it would let those entries judge the wrong pods.
 */
import { identityKey } from '../../policy/identity.ts';
import type { ClusterView, PolicyPod } from '../../policy/types.ts';

/** A pod as the compiler numbers it: its identity key and its addresses. */
export interface KeyedPod {
  key: string;
  ips: string[];
}

/** What the rebuild decided. */
export interface NumberingPlan {
  /** Label-set key → the number it gets back. */
  adopted: Map<string, number>;
  /** Numbers the maps show that no single label set could be given back, with why (they are never handed out again). */
  retired: { number: number; why: string }[];
}

/** Each pod with the identity key the compiler gives it (policy/compile.ts identitiesOf). */
export function keyedPods(pods: PolicyPod[], namespaces: ClusterView['namespaces']): KeyedPod[] {
  return pods.map((p) => ({ key: identityKey({ namespace: p.namespace, podLabels: p.labels, namespaceLabels: namespaces.get(p.namespace) ?? {} }), ips: p.ips }));
}

/** The numbers to give back (see the file comment). identityOfAddress: each pod address's number in the maps. */
export function planNumbering(pods: KeyedPod[], identityOfAddress: ReadonlyMap<string, number>): NumberingPlan {
  const numbersOfKey = new Map<string, Set<number>>();
  const keysOfNumber = new Map<number, Set<string>>();
  for (const pod of pods) {
    for (const ip of pod.ips) {
      const n = identityOfAddress.get(ip);
      // An address with no number yet (a pod the agent had not synced) says nothing either way.
      if (n === undefined) continue;
      let ns = numbersOfKey.get(pod.key);
      if (!ns) numbersOfKey.set(pod.key, (ns = new Set()));
      ns.add(n);
      let ks = keysOfNumber.get(n);
      if (!ks) keysOfNumber.set(n, (ks = new Set()));
      ks.add(pod.key);
    }
  }
  const adopted = new Map<string, number>();
  const retired: NumberingPlan['retired'] = [];
  for (const [n, keys] of keysOfNumber) {
    if (keys.size > 1) {
      retired.push({ number: n, why: `pods of ${keys.size} label sets carry it (relabelled while the agent was down?)` });
      continue;
    }
    const key = [...keys][0]!;
    if (numbersOfKey.get(key)!.size > 1) retired.push({ number: n, why: `pods of its label set carry ${[...numbersOfKey.get(key)!].sort((a, b) => a - b).join(' and ')}` });
    else adopted.set(key, n);
  }
  return { adopted, retired: retired.sort((a, b) => a.number - b.number) };
}

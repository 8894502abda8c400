/**
 * The incremental compiler (policy/incremental.ts) against the reference,
 * compile() of the whole cluster: random event sequences (pods added,
 * relabelled, readdressed and deleted, namespaces relabelled, policies added,
 * changed and deleted, local endpoints coming and going), and after every
 * event the two results must be equal. A seeded generator (fast-check is not
 * a dependency): a failure names its seed and event, and replays.
 */
import { describe, expect, it } from 'vitest';
import { Identity } from '../lib/identity-numbers.ts';
import { compile, type CompiledState } from '../policy/compile.ts';
import { IncrementalCompiler } from '../policy/incremental.ts';
import { identityKey, MemoryNumbering } from '../policy/identity.ts';
import { Cluster, Gen, LOCAL_PODS, NAMESPACES, randomEvent } from './support/policy-events.ts';

const SEQUENCES = 60;
const EVENTS_PER_SEQUENCE = 60;

/** A compiled state in a form that does not depend on the order things came in. */
function canonical(state: CompiledState) {
  const sorted = (xs: string[]) => [...xs].sort();
  return {
    identities: sorted([...state.identities].map(([id, labels]) => `${id}=${identityKey(labels)}`)),
    ipcache: sorted(state.ipcache.map((e) => `${e.address}/${e.prefixLength}=${e.identity}`)),
    endpoints: [...state.endpoints]
      .sort((a, b) => a.endpointId - b.endpointId)
      .map((e) => ({
        endpointId: e.endpointId,
        identity: e.identity,
        ingressIsolated: e.ingressIsolated,
        egressIsolated: e.egressIsolated,
        policies: sorted(e.policies),
        entries: sorted(e.entries.map((x) => `${x.direction} ${x.peer} ${x.protocol} ${x.port}/${x.portPrefixLength}`)),
        cidrEntries: sorted(e.cidrEntries.map((x) => `${x.direction} ${x.address}/${x.prefixLength} ${x.selector} ${x.ports.join(',')}`)),
      })),
    selectors: sorted([...state.selectors].map(([n, ports]) => `${n}=${ports.join(',')}`)),
  };
}

describe('incremental policy compiler', () => {
  it(`equals a full recompile after every event of ${SEQUENCES} random sequences of ${EVENTS_PER_SEQUENCE} events`, () => {
    let entriesSeen = 0;
    let recompiled = 0;
    let events = 0;
    for (let seed = 1; seed <= SEQUENCES; seed++) {
      const g = new Gen(seed);
      const numbering = new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1);
      const cluster = new Cluster();
      const inc = new IncrementalCompiler(numbering);
      // The agent's path: whole views diffed into events.
      const viaView = new IncrementalCompiler(numbering);
      for (const ns of NAMESPACES) {
        const labels = g.namespaceLabels();
        cluster.namespaces.set(ns, labels);
        inc.setNamespace(ns, labels);
      }
      const history: string[] = [];
      for (let i = 0; i < EVENTS_PER_SEQUENCE; i++) {
        history.push(randomEvent(g, cluster, inc));
        events++;
        const local = cluster.localList();
        const got = inc.state();
        viaView.applyView(cluster.view(), local);
        const gotViaView = viaView.state();
        const want = compile(cluster.view(), local, numbering);
        const where = `seed ${seed}, event ${i + 1}:\n  ${history.slice(-6).join('\n  ')}`;
        expect(canonical(got), where).toEqual(canonical(want));
        expect(canonical(gotViaView), `${where}\n(through applyView)`).toEqual(canonical(want));
        entriesSeen += want.endpoints.reduce((n, e) => n + e.entries.length + e.cidrEntries.length, 0);
      }
      recompiled += inc.recompiled;
    }
    // The sequences reach real rules, and the compiler does not recompile every endpoint on every event.
    expect(entriesSeen).toBeGreaterThan(1000);
    expect(recompiled).toBeLessThan(events * LOCAL_PODS.length);
  });

  it('hands back the same compiled endpoint when an event does not reach it', () => {
    const numbering = new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1);
    const inc = new IncrementalCompiler(numbering);
    inc.setNamespace('a', {});
    inc.upsertPod({ namespace: 'a', name: 'web', labels: { app: 'web' }, ips: ['10.0.0.1'], ports: [] });
    inc.upsertEndpoint({ endpointId: 1, namespace: 'a', pod: 'web', ips: ['10.0.0.1'] });
    inc.upsertPolicy({ namespace: 'a', name: 'web-from-db', podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'db' } } }] }] });
    const first = inc.state().endpoints[0]!;
    inc.takeIpcacheChanges();
    // A pod no selector takes: a new identity, an ipcache entry, no recompile.
    inc.upsertPod({ namespace: 'a', name: 'cache', labels: { app: 'cache' }, ips: ['10.0.0.2'], ports: [] });
    expect(inc.state().endpoints[0]).toBe(first);
    expect(inc.takeIpcacheChanges()).toEqual(['10.0.0.2']);
    // A pod the policy's peer takes: recompiled, its identity allowed.
    inc.upsertPod({ namespace: 'a', name: 'db', labels: { app: 'db' }, ips: ['10.0.0.3'], ports: [] });
    const second = inc.state().endpoints[0]!;
    expect(second).not.toBe(first);
    expect(second.entries.map((e) => e.peer)).toContain(inc.ipcacheEntry('10.0.0.3')!.identity);
    // A second pod of that identity: the selector's identities are unchanged, so nothing is recompiled.
    inc.upsertPod({ namespace: 'a', name: 'db2', labels: { app: 'db' }, ips: ['10.0.0.4'], ports: [] });
    expect(inc.state().endpoints[0]).toBe(second);
  });

  it('recompiles an endpoint whose egress names a port only for pods that have a port of that name', () => {
    const inc = new IncrementalCompiler(new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1));
    inc.setNamespace('a', {});
    inc.upsertPod({ namespace: 'a', name: 'web', labels: { app: 'web' }, ips: ['10.0.0.1'], ports: [] });
    inc.upsertEndpoint({ endpointId: 1, namespace: 'a', pod: 'web', ips: ['10.0.0.1'] });
    inc.upsertPolicy({ namespace: 'a', name: 'out', podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Egress'], egress: [{ to: [{ podSelector: {} }], ports: [{ port: 'http' }] }] });
    inc.upsertPod({ namespace: 'a', name: 'api', labels: { app: 'api' }, ips: ['10.0.0.2'], ports: [{ name: 'http', containerPort: 8080 }] });
    const first = inc.state().endpoints[0]!;
    expect(first.cidrEntries.map((e) => e.address)).toEqual(['10.0.0.2']);
    const recompiled = inc.recompiled;
    // Pods of a label set that exists, without a port named http: nothing to recompile.
    for (let i = 0; i < 5; i++) inc.upsertPod({ namespace: 'a', name: `w${i}`, labels: { app: 'web' }, ips: [`10.0.1.${i}`], ports: [{ name: 'metrics', containerPort: 9090 }] });
    expect(inc.state().endpoints[0]).toBe(first);
    expect(inc.recompiled).toBe(recompiled);
    // One with it: its address is allowed.
    inc.upsertPod({ namespace: 'a', name: 'api2', labels: { app: 'api' }, ips: ['10.0.0.3'], ports: [{ name: 'http', containerPort: 8080 }] });
    expect(inc.state().endpoints[0]!.cidrEntries.map((e) => e.address).sort()).toEqual(['10.0.0.2', '10.0.0.3']);
  });

  it('gives an address two pods claim to the pod that claimed it last, and back to the other when that one goes', () => {
    const inc = new IncrementalCompiler(new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1));
    inc.setNamespace('a', {});
    inc.upsertPod({ namespace: 'a', name: 'old', labels: { app: 'old' }, ips: ['10.0.0.9'], ports: [] });
    const oldId = inc.ipcacheEntry('10.0.0.9')!.identity;
    inc.upsertPod({ namespace: 'a', name: 'new', labels: { app: 'new' }, ips: ['10.0.0.9'], ports: [] });
    const newId = inc.ipcacheEntry('10.0.0.9')!.identity;
    expect(newId).not.toBe(oldId);
    inc.upsertPod({ namespace: 'a', name: 'third', labels: { app: 'third' }, ips: ['10.0.0.9'], ports: [] });
    const thirdId = inc.ipcacheEntry('10.0.0.9')!.identity;
    inc.deletePod('a', 'third');
    expect(inc.ipcacheEntry('10.0.0.9')!.identity).toBe(newId);
    inc.upsertPod({ namespace: 'a', name: 'old', labels: { app: 'old' }, ips: ['10.0.0.9'], ports: [] }); // the same: no new claim
    expect(inc.ipcacheEntry('10.0.0.9')!.identity).toBe(newId);
    inc.deletePod('a', 'new');
    expect(inc.ipcacheEntry('10.0.0.9')!.identity).toBe(oldId);
    expect(inc.ipcache().map((e) => e.identity)).toEqual([oldId]);
    inc.deletePod('a', 'old');
    expect(inc.ipcacheEntry('10.0.0.9')).toBeUndefined();
    expect(inc.ipcache()).toEqual([]);
    expect(thirdId).not.toBe(newId);
  });

  it('patches an endpoint that a new or gone label set reaches: only the entries naming it change, and it says which', () => {
    const numbering = new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1);
    const inc = new IncrementalCompiler(numbering);
    inc.setNamespace('a', {});
    inc.upsertPod({ namespace: 'a', name: 'web', labels: { app: 'web' }, ips: ['10.0.0.1'], ports: [{ name: 'http', containerPort: 8080 }] });
    inc.upsertEndpoint({ endpointId: 1, namespace: 'a', pod: 'web', ips: ['10.0.0.1'] });
    // Every pod of the namespace on two ports, plus a named port, and any peer on 53: entries for every identity, and some for none.
    inc.upsertPolicy({ namespace: 'a', name: 'p', podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ podSelector: {} }], ports: [{ port: 80 }, { port: 'http' }] }, { ports: [{ port: 53, protocol: 'UDP' }] }] });
    for (let i = 0; i < 30; i++) inc.upsertPod({ namespace: 'a', name: `c${i}`, labels: { app: `c${i % 10}` }, ips: [`10.0.1.${i}`], ports: [] });
    const before = inc.state().endpoints[0]!;
    const recompiled = inc.recompiled;

    inc.upsertPod({ namespace: 'a', name: 'new', labels: { app: 'new' }, ips: ['10.0.2.1'], ports: [] });
    const after = inc.state().endpoints[0]!;
    const id = inc.ipcacheEntry('10.0.2.1')!.identity;
    const patch = inc.entryDeltaOf(after)!;
    expect(patch.from).toBe(before);
    expect(patch.delta.removed).toEqual([]);
    expect(patch.delta.added.map((e) => `${e.peer} ${e.protocol} ${e.port}`).sort()).toEqual([`${id} 6 80`, `${id} 6 8080`]);
    expect(after.entries.length).toBe(before.entries.length + 2);
    expect(inc.recompiled).toBe(recompiled + 1);

    // Its last pod gone: the identity's entries go, the rest stay.
    inc.deletePod('a', 'new');
    const gone = inc.state().endpoints[0]!;
    expect(inc.entryDeltaOf(gone)!.delta.removed.map((e) => e.peer)).toEqual([id, id]);
    expect(gone.entries.map((e) => `${e.peer} ${e.port}`).sort()).toEqual(before.entries.map((e) => `${e.peer} ${e.port}`).sort());
  });
});

/**
 * Unknown labels fail closed (issue 31): a local endpoint whose pod or
 * namespace the view does not hold yet is isolated both ways with no allow
 * entries, when the view says pods may lag (the Kubernetes datastore), and
 * compiled as before otherwise.
 */
import { describe, expect, it } from 'vitest';
import { Identity } from '../lib/identity-numbers.ts';
import { compile, type LocalEndpoint } from '../policy/compile.ts';
import { MemoryNumbering } from '../policy/identity.ts';
import { explainFlow } from '../policy/explain.ts';
import { endpointsWithUnknownLabels, isolateUnknownPods, UNKNOWN_LABELS_REASON } from '../policy/unknown-labels.ts';
import type { ClusterView, NetworkPolicy } from '../policy/types.ts';

const numbering = () => new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1);

/** Allows everything in to app=web from anyone: a pod compiled with guessed labels gets nothing of it. */
const openToAll: NetworkPolicy = { namespace: 'a', name: 'open', podSelector: {}, policyTypes: ['Ingress'], ingress: [{}] };

function view(isolateUnknownPods: boolean, extra: Partial<ClusterView> = {}): ClusterView {
  return {
    namespaces: new Map([['a', { team: 'a' }]]),
    pods: [{ namespace: 'a', name: 'known', labels: { app: 'web' }, ips: ['10.0.0.1'], ports: [] }],
    policies: [openToAll],
    ...(isolateUnknownPods ? { isolateUnknownPods } : {}),
    ...extra,
  };
}

const known: LocalEndpoint = { endpointId: 1, namespace: 'a', pod: 'known', ips: ['10.0.0.1'] };
const unknownPod: LocalEndpoint = { endpointId: 2, namespace: 'a', pod: 'late', ips: ['10.0.0.2'] };
const unknownNamespace: LocalEndpoint = { endpointId: 3, namespace: 'b', pod: 'x', ips: ['10.0.0.3'] };

describe('unknown labels fail closed', () => {
  it('isolates in both directions, with no entries, an endpoint whose pod or namespace the view lacks', () => {
    const v = view(true, { pods: [...view(true).pods, { namespace: 'b', name: 'x', labels: {}, ips: ['10.0.0.3'], ports: [] }] });
    const local = [known, unknownPod, unknownNamespace];
    expect([...endpointsWithUnknownLabels(v, local)].sort()).toEqual([2, 3]);
    const state = isolateUnknownPods(v, local, compile(v, local, numbering()));
    const [k, late, noNs] = state.endpoints;
    expect(k).toMatchObject({ endpointId: 1, ingressIsolated: true, egressIsolated: false, policies: ['a/open'] });
    expect(k!.entries.length).toBeGreaterThan(0);
    for (const ep of [late!, noNs!]) {
      expect(ep).toMatchObject({ ingressIsolated: true, egressIsolated: true, policies: [], entries: [], cidrEntries: [] });
    }
    // The address keeps an identity in the ipcache: peers' rules and flow records still name it.
    expect(late!.identity).toBeGreaterThanOrEqual(Identity.FIRST_POD);
    expect(state.ipcache.some((e) => e.address === '10.0.0.2' && e.identity === late!.identity)).toBe(true);
  });

  it('switches to the real policy once the pod is in the view', () => {
    const n = numbering();
    const before = isolateUnknownPods(view(true), [unknownPod], compile(view(true), [unknownPod], n));
    expect(before.endpoints[0]).toMatchObject({ ingressIsolated: true, egressIsolated: true });
    const arrived = view(true, { pods: [...view(true).pods, { namespace: 'a', name: 'late', labels: { app: 'web' }, ips: ['10.0.0.2'], ports: [] }] });
    const after = isolateUnknownPods(arrived, [unknownPod], compile(arrived, [unknownPod], n));
    expect(after.endpoints[0]).toMatchObject({ ingressIsolated: true, egressIsolated: false, policies: ['a/open'] });
    expect(after.endpoints[0]!.entries.length).toBeGreaterThan(0);
  });

  it('changes nothing where the datastore does not lag (local cluster, no datastore): an unknown pod is unlabelled', () => {
    const v = view(false);
    const compiled = compile(v, [unknownPod], numbering());
    expect(endpointsWithUnknownLabels(v, [unknownPod]).size).toBe(0);
    expect(isolateUnknownPods(v, [unknownPod], compiled)).toBe(compiled);
    expect(compiled.endpoints[0]).toMatchObject({ ingressIsolated: true, egressIsolated: false, policies: ['a/open'] });
  });

  it('hands back the same isolated endpoint while the compiled one is unchanged (the sync sees no change)', () => {
    const v = view(true);
    const c = compile(v, [unknownPod], numbering());
    expect(isolateUnknownPods(v, [unknownPod], c).endpoints[0]).toBe(isolateUnknownPods(v, [unknownPod], c).endpoints[0]);
  });

  it('is explained as such: denied both ways, whoever the peer, but for the node itself', () => {
    const v = view(true);
    const local = [known, unknownPod];
    const inbound = explainFlow(v, { from: 'a/known', to: 'a/late', protocol: 'TCP', port: 80 }, { local });
    expect(inbound.allowed).toBe(false);
    expect(inbound.ingress).toMatchObject({ isolated: true, allowed: false, reason: UNKNOWN_LABELS_REASON });
    const outbound = explainFlow(v, { from: 'a/late', to: 'a/known', protocol: 'TCP', port: 80 }, { local });
    expect(outbound.egress).toMatchObject({ allowed: false, reason: UNKNOWN_LABELS_REASON });
    const fromHost = explainFlow(v, { from: '192.0.2.10', to: 'a/late', protocol: 'TCP', port: 80 }, { local, addresses: { host: ['192.0.2.10'] } });
    expect(fromHost.ingress.reason).not.toBe(UNKNOWN_LABELS_REASON);
    // Where pods cannot lag (the local cluster), the same pod is judged by its (empty) labels as before.
    expect(explainFlow(view(false), { from: 'a/known', to: 'a/late', protocol: 'TCP', port: 80 }, { local }).ingress.reason).not.toBe(UNKNOWN_LABELS_REASON);
  });
});

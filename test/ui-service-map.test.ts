/**
 * The service map behind `sluice ui`: which nodes and edges flow records
 * make, and each edge's verdict, rates, error share and latency over the
 * sliding window; its memory stays bounded.
 */
import { describe, expect, it } from 'vitest';
import type { FlowEndpoint, FlowRecord } from '../contract/flows.ts';
import { layoutMap } from '../ui/layout.ts';
import { ServiceMap, isL7Error, type MapNode } from '../ui/service-map.ts';

const T0 = Date.parse('2026-12-07T20:00:00.000Z');

function pod(ns: string, name: string, port = 0): FlowEndpoint {
  return { ip: '10.0.0.1', port, identity: 300, name: `${ns}/${name}`, namespace: ns, pod: name, labels: { app: name } };
}
const WORLD: FlowEndpoint = { ip: '1.1.1.1', port: 443, identity: 2, name: 'world' };

/** A record at T0 + ms, from b to a:80 allowed unless the overrides say otherwise. */
function rec(ms: number, over: Partial<FlowRecord> = {}): FlowRecord {
  return {
    time: new Date(T0 + ms).toISOString(),
    type: 'flow',
    verdict: 'ALLOWED',
    reason: 'policy',
    source: pod('x', 'b', 40000),
    destination: pod('x', 'a', 80),
    protocol: 'TCP',
    direction: 'ingress',
    isReply: false,
    interface: { index: 3 },
    bytes: 60,
    summary: '',
    ...over,
  };
}

const http = (ms: number, kind: 'request' | 'response', status?: number, latencyMs?: number): FlowRecord =>
  rec(ms, {
    type: 'l7',
    isReply: kind === 'response',
    ...(kind === 'response' ? { source: pod('x', 'a', 80), destination: pod('x', 'b', 40000) } : {}),
    l7: { type: 'http', kind, ...(latencyMs === undefined ? {} : { latencyMs }), http: { version: 'HTTP/1.1', method: 'GET', path: '/', ...(status ? { status } : {}) } },
  });

const dns = (ms: number, rcode: string, latencyMs: number): FlowRecord =>
  rec(ms, {
    type: 'l7',
    protocol: 'UDP',
    isReply: true,
    source: { ip: '10.96.0.10', port: 53, identity: 400, name: 'kube-system/coredns', namespace: 'kube-system', pod: 'coredns' },
    destination: pod('x', 'b', 5353),
    l7: { type: 'dns', kind: 'response', latencyMs, dns: { id: 1, query: 'a.x.svc', qtype: 'A', rcode } },
  });

function build(records: FlowRecord[], options = {}): ServiceMap {
  const map = new ServiceMap(options);
  for (const r of records) map.add(r, T0);
  return map;
}

describe('ServiceMap', () => {
  it('makes one node per pod (with its namespace) and per non-pod end, and one edge per opener and responder', () => {
    const snap = build([rec(0), rec(100), rec(200, { destination: WORLD, direction: 'egress' })]).snapshot(T0 + 1000);
    expect(snap.nodes).toEqual([
      { id: 'world', label: 'world', namespace: '', kind: 'external' },
      { id: 'x/a', label: 'a', namespace: 'x', kind: 'pod', labels: { app: 'a' } },
      { id: 'x/b', label: 'b', namespace: 'x', kind: 'pod', labels: { app: 'b' } },
    ]);
    expect(snap.edges.map((e) => e.id)).toEqual(['x/b -> world', 'x/b -> x/a']);
    expect(snap.edges[1]).toMatchObject({ source: 'x/b', destination: 'x/a', counts: { allowed: 2, denied: 0, dropped: 0 }, ports: ['TCP/80'] });
    expect(snap.records).toBe(3);
  });

  it('counts a reply and an HTTP response on the edge of the flow they answer', () => {
    const snap = build([http(0, 'request'), http(10, 'response', 200, 4), rec(20, { isReply: true, source: pod('x', 'a', 80), destination: pod('x', 'b', 40000) })]).snapshot(T0 + 1000);
    expect(snap.edges.map((e) => e.id)).toEqual(['x/b -> x/a']);
    expect(snap.edges[0]!.ports).toEqual(['TCP/80']);
  });

  it('colours an edge by the verdicts in the window: allowed, mixed, then denied once the allowed ones age out', () => {
    const map = build([rec(0), rec(5000, { verdict: 'DENIED', dropReason: 'DROP_POLICY_INGRESS' })], { windowMs: 10_000 });
    expect(map.snapshot(T0 + 1000).edges[0]).toMatchObject({ verdict: 'allowed', active: true });
    expect(map.snapshot(T0 + 6000).edges[0]).toMatchObject({ verdict: 'mixed', active: true, counts: { allowed: 1, denied: 1, dropped: 0 } });
    expect(map.snapshot(T0 + 12_000).edges[0]).toMatchObject({ verdict: 'denied', active: true });
    // Idle: the window is empty, the edge keeps the colour of its last record.
    expect(map.snapshot(T0 + 30_000).edges[0]).toMatchObject({ verdict: 'denied', active: false, flowsPerSec: 0, errorRatio: null });
  });

  it('a dropped packet is an error and colours the edge red', () => {
    const snap = build([rec(0, { type: 'drop', verdict: 'DROPPED', dropReason: 'DROP_SPOOF', reason: 'spoofing' })]).snapshot(T0 + 1000);
    expect(snap.edges[0]).toMatchObject({ verdict: 'denied', errorRatio: 1, counts: { dropped: 1 } });
  });

  it('gives new flows and L7 requests per second over the window, and forgets what left it', () => {
    const records = [...Array.from({ length: 20 }, (_, i) => rec(i * 100)), ...Array.from({ length: 50 }, (_, i) => http(i * 100, 'request'))];
    const map = build(records, { windowMs: 10_000 });
    expect(map.snapshot(T0 + 5000).edges[0]).toMatchObject({ flowsPerSec: 2, requestsPerSec: 5 });
    // At 11 s the window starts at 1 s: the first second's records left it.
    expect(map.snapshot(T0 + 11_000).edges[0]).toMatchObject({ flowsPerSec: 1, requestsPerSec: 4 });
    expect(map.snapshot(T0 + 16_000).edges[0]).toMatchObject({ flowsPerSec: 0, requestsPerSec: 0, counts: { allowed: 70 } });
  });

  it('error share: HTTP 5xx and DNS rcodes other than NOERROR over all outcomes; 4xx is no error', () => {
    const snap = build([
      http(0, 'response', 200, 1),
      http(1, 'response', 404, 1),
      http(2, 'response', 500, 1),
      http(3, 'response', 503, 1),
      dns(4, 'NOERROR', 2),
      dns(5, 'NXDOMAIN', 2),
    ]).snapshot(T0 + 1000);
    const [coredns, web] = snap.edges;
    expect(web).toMatchObject({ id: 'x/b -> x/a', errorRatio: 0.5, errorsPerSec: 0.2 });
    expect(coredns).toMatchObject({ id: 'x/b -> kube-system/coredns', errorRatio: 0.5, latencyP50Ms: 2 });
    expect(isL7Error(http(0, 'request'))).toBe(false);
  });

  it('latency p50 is the median of the responses in the window', () => {
    const latencies = [100, 1, 3, 2, 50, 7];
    const map = build(latencies.map((ms, i) => http(i < 4 ? i : 8000 + i, 'response', 200, ms)), { windowMs: 10_000 });
    expect(map.snapshot(T0 + 9000).edges[0]!.latencyP50Ms).toBe(5);
    // The four early ones left the window.
    expect(map.snapshot(T0 + 10_500).edges[0]!.latencyP50Ms).toBe(28.5);
    expect(map.snapshot(T0 + 30_000).edges[0]!.latencyP50Ms).toBeNull();
  });

  it('stays bounded: the least recently seen edges go first, with the nodes only they joined', () => {
    const map = new ServiceMap({ maxEdges: 3 });
    for (let i = 0; i < 10_000; i++) map.add(rec(i, { source: pod('x', `c${i}`, 1) }), T0);
    map.add(rec(20_000, { source: pod('x', 'c9997', 1) }), T0);
    map.add(rec(20_001, { source: pod('x', 'new', 1) }), T0);
    const snap = map.snapshot(T0 + 20_500);
    expect(snap.edges.map((e) => e.source).sort()).toEqual(['x/c9997', 'x/c9999', 'x/new']);
    expect(snap.nodes.map((n) => n.id)).toEqual(['x/a', 'x/c9997', 'x/c9999', 'x/new']);
    expect(snap.evictedEdges).toBe(10_001 - 3);
    // Thousands of records on one edge keep its latency ring at a fixed size.
    const one = new ServiceMap();
    for (let i = 0; i < 5000; i++) one.add(http(i, 'response', 200, i), T0);
    expect(one.snapshot(T0 + 6000).edges[0]!.latencyP50Ms).toBeGreaterThan(4800);
  });

  it('draws the known pods that have no traffic too', () => {
    const map = build([rec(0)]);
    map.setKnownPods([{ namespace: 'x', pod: 'a' }, { namespace: 'y', pod: 'idle' }]);
    expect(map.snapshot(T0 + 1000).nodes.map((n) => n.id)).toEqual(['x/a', 'x/b', 'y/idle']);
  });
});

describe('layoutMap', () => {
  const podNode = (ns: string, name: string): MapNode => ({ id: `${ns}/${name}`, label: name, namespace: ns, kind: 'pod' });
  const nodes: MapNode[] = [
    { id: 'world', label: 'world', namespace: '', kind: 'external' },
    ...['e', 'd', 'c', 'b', 'a'].map((n) => podNode('shop', n)),
    podNode('ops', 'prober'),
    ...Array.from({ length: 20 }, (_, i) => podNode(`ns${String(i).padStart(2, '0')}`, 'p')),
  ];

  it('puts each namespace in a box, sorted by name, the ends that are not pods last, every node inside its box', () => {
    const layout = layoutMap(nodes);
    expect(layout.groups.map((g) => g.namespace).slice(0, 2)).toEqual(['ns00', 'ns01']);
    expect(layout.groups.at(-1)).toMatchObject({ namespace: '', label: 'outside the pods' });
    expect(layout.nodes).toHaveLength(nodes.length);
    for (const n of layout.nodes) {
      const box = layout.groups.find((g) => g.namespace === n.namespace)!;
      expect(n.x).toBeGreaterThan(box.x);
      expect(n.x).toBeLessThan(box.x + box.width);
      expect(n.y).toBeGreaterThan(box.y);
      expect(n.y).toBeLessThan(box.y + box.height);
      expect(n.x).toBeLessThan(layout.width);
      expect(n.y).toBeLessThan(layout.height);
    }
    // Five pods on a 3-column grid, by name.
    const shop = layout.nodes.filter((n) => n.namespace === 'shop');
    expect(shop.map((n) => n.label)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(new Set(shop.map((n) => n.y)).size).toBe(2);
    expect(new Set(shop.map((n) => n.x)).size).toBe(3);
  });

  it('wraps boxes into rows, no two overlapping, and places the same nodes the same way whatever their order', () => {
    const layout = layoutMap(nodes);
    expect(new Set(layout.groups.map((g) => g.y)).size).toBeGreaterThan(1);
    for (const a of layout.groups) {
      for (const b of layout.groups) {
        if (a === b) continue;
        const apart = a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y;
        expect(apart, `${a.namespace} and ${b.namespace} overlap`).toBe(true);
      }
    }
    expect(layoutMap([...nodes].reverse())).toEqual(layout);
  });
});

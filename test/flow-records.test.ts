/**
 * Flow records without a kernel: a datapath event becomes a record with both
 * ends named, filters read from a query and matched, the ring keeps the
 * newest and counts what slow followers miss, and kubectl-style selectors.
 */
import { describe, expect, it, vi } from 'vitest';
import type { FlowRecord } from '../contract/flows.ts';
import { Counter, Direction, EventType, Verdict, type DatapathEvent } from '../datapath/abi.ts';
import { FlowFilterError, flowFilterOf, flowMatches } from '../agent/flows/filter.ts';
import { ensureSummary, flowRecordOf, tcpFlagNames, type FlowNaming } from '../agent/flows/record.ts';
import { FlowStore } from '../agent/flows/store.ts';
import { PolicyNamer, REFRESH_FACTOR } from '../agent/flows/policy-names.ts';
import { Compilation } from '../policy/compile.ts';
import type { ClusterView, PolicyPod } from '../policy/types.ts';
import { parseSelectorText, SelectorSyntaxError, selectorMatches } from '../policy/selector.ts';

const naming: FlowNaming = {
  podOfIp: (ip) => ({ '10.0.0.1': { namespace: 'web', pod: 'client' }, '10.0.0.2': { namespace: 'web', pod: 'server' } })[ip],
  podOfEndpoint: () => undefined,
  hostAddresses: () => ['192.168.1.1'],
  labelsOf: (ns, pod) => (ns === 'web' ? { app: pod, tier: pod === 'server' ? 'back' : 'front' } : undefined),
  interfaceName: (i) => (i === 7 ? 'slc1234' : undefined),
};

function event(over: Partial<DatapathEvent> = {}): DatapathEvent {
  return {
    timestampNs: 5_000_000_000n,
    type: EventType.VERDICT,
    reason: Counter.POLICY_ALLOWED,
    srcIdentity: 300,
    dstIdentity: 301,
    srcEndpoint: 0,
    dstEndpoint: 0,
    family: 4,
    src: '10.0.0.1',
    dst: '10.0.0.2',
    sport: 40000,
    dport: 80,
    protocol: 6,
    direction: Direction.INGRESS,
    verdict: Verdict.ALLOWED,
    ifindex: 7,
    len: 60,
    tcpFlags: 0x02,
    isReply: false,
    payload: Buffer.alloc(0),
    ...over,
  };
}

const BOOT_MS = Date.parse('2026-12-07T10:00:00Z');

describe('flowRecordOf', () => {
  it('names both ends with labels, the device, the flags and the policies', () => {
    const r = flowRecordOf(event(), naming, BOOT_MS, undefined, () => [{ namespace: 'web', name: 'allow-front', direction: 'ingress', rule: 0 }]);
    expect(r).toMatchObject({
      time: '2026-12-07T10:00:05.000Z',
      type: 'flow',
      verdict: 'ALLOWED',
      reason: 'policy',
      protocol: 'TCP',
      tcpFlags: ['SYN'],
      direction: 'ingress',
      isReply: false,
      interface: { index: 7, name: 'slc1234' },
      source: { ip: '10.0.0.1', port: 40000, identity: 300, name: 'web/client', namespace: 'web', pod: 'client', labels: { app: 'client', tier: 'front' } },
      destination: { name: 'web/server', pod: 'server', port: 80 },
      policies: [{ namespace: 'web', name: 'allow-front', direction: 'ingress', rule: 0 }],
    });
    expect(r.dropReason).toBeUndefined();
    expect(ensureSummary(r).summary).toBe('web/client:40000 -> web/server:80 TCP [SYN] ALLOWED ingress (policy) by web/allow-front#0');
  });

  it('says "no policy" for a flow no policy judged, and gives a drop its counter', () => {
    expect(flowRecordOf(event({ direction: 0 }), naming, BOOT_MS).reason).toBe('no policy');
    const drop = flowRecordOf(event({ type: EventType.DROP, reason: Counter.DROP_SPOOF, direction: 0, src: '10.9.9.9' }), naming, BOOT_MS);
    expect(drop).toMatchObject({ type: 'drop', verdict: 'DROPPED', dropReason: 'DROP_SPOOF', reason: 'spoofing' });
    expect(drop.source.pod).toBeUndefined();
    expect(drop.source.labels).toBeUndefined();
  });

  it('marks a Service frontend, and carries an L7 summary with its kind', () => {
    const svc = flowRecordOf(event({ dst: '10.96.0.10', dstIdentity: 5, dport: 53, protocol: 17 }), naming, BOOT_MS);
    expect(svc.service).toEqual({ ip: '10.96.0.10', port: 53 });
    expect(svc.tcpFlags).toBeUndefined();
    const l7 = flowRecordOf(event({ type: EventType.L7, src: '10.0.0.2', dst: '10.0.0.1', sport: 80, dport: 40000, tcpFlags: 0x18 }), naming, BOOT_MS, {
      type: 'http',
      kind: 'response',
      latencyMs: 1.25,
      http: { version: 'HTTP/1.1', method: 'GET', path: '/x', status: 503 },
    });
    expect(l7).toMatchObject({ type: 'l7', isReply: true, direction: '', reason: 'http', tcpFlags: ['PSH', 'ACK'] });
    expect(ensureSummary(l7).summary).toBe('web/server:80 -> web/client:40000 TCP [PSH,ACK] HTTP 503 GET /x 1.3ms');
  });

  it('names every TCP flag bit', () => {
    expect(tcpFlagNames(0xff)).toEqual(['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR']);
    expect(tcpFlagNames(0)).toEqual([]);
  });
});

describe('flow filters', () => {
  const r = flowRecordOf(event(), naming, BOOT_MS);
  const q = (text: string) => flowFilterOf(new URLSearchParams(text), BOOT_MS + 10_000);

  it('match on either end, and all given must hold', () => {
    expect(flowMatches(r, q(''))).toBe(true);
    expect(flowMatches(r, q('namespace=web&pod=server&port=80&protocol=tcp&verdict=allowed&type=flow'))).toBe(true);
    expect(flowMatches(r, q('pod=web/client'))).toBe(true);
    expect(flowMatches(r, q('pod=other'))).toBe(false);
    expect(flowMatches(r, q('port=81'))).toBe(false);
    expect(flowMatches(r, q('verdict=denied'))).toBe(false);
    expect(flowMatches(r, q('l7=dns'))).toBe(false);
    expect(flowMatches(r, q('selector=tier=back'))).toBe(true);
    expect(flowMatches(r, q('selector=tier in (middle)'))).toBe(false);
  });

  it('read since as a time or a duration back from now', () => {
    expect(flowMatches(r, q('since=1m'))).toBe(true); // record at +5 s, now +10 s
    expect(flowMatches(r, q('since=2s'))).toBe(false);
    expect(flowMatches(r, q('since=2026-12-07T10:00:06Z'))).toBe(false);
  });

  it('refuse what they cannot read, rather than show everything', () => {
    for (const bad of ['verdict=maybe', 'type=x', 'l7=smtp', 'port=70000', 'port=1.5', 'since=yesterday', 'selector=a in (b']) {
      expect(() => q(bad), bad).toThrow(FlowFilterError);
    }
  });
});

describe('FlowStore', () => {
  const rec = (port: number): FlowRecord => flowRecordOf(event({ dport: port }), naming, BOOT_MS);

  it('keeps the newest records up to its capacity and answers the last N that match, oldest first', () => {
    const store = new FlowStore(5);
    for (let p = 1; p <= 8; p++) store.add(rec(p));
    expect(store.held()).toBe(5);
    expect(store.latest(flowFilterOf(new URLSearchParams()), 100).map((r) => r.destination.port)).toEqual([4, 5, 6, 7, 8]);
    expect(store.latest(flowFilterOf(new URLSearchParams()), 2).map((r) => r.destination.port)).toEqual([7, 8]);
    expect(store.latest(flowFilterOf(new URLSearchParams('port=5')), 100).map((r) => r.destination.port)).toEqual([5]);
  });

  it('sends followers what matches, and counts what a full follower misses', () => {
    const store = new FlowStore(10);
    const got: number[] = [];
    const stop = store.follow(flowFilterOf(new URLSearchParams('port=1')), (r) => (got.push(r.destination.port), got.length <= 2));
    for (let i = 0; i < 4; i++) store.add(rec(1));
    store.add(rec(2));
    expect(got).toEqual([1, 1, 1, 1]);
    expect(store.followerLosses).toBe(2);
    stop();
    store.add(rec(1));
    expect(got).toHaveLength(4);
  });

  it('gives back each record as it was, with its summary, also one too large for a slot and one with non-ASCII labels', () => {
    const store = new FlowStore(3);
    const big = rec(1);
    big.source.labels = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`example.com/label-${i}`, 'v'.repeat(40)]));
    const wide = rec(2);
    wide.destination.labels = { team: 'équipe-日本' };
    for (const r of [big, wide, rec(3)]) store.add(r);
    const back = store.latest(flowFilterOf(new URLSearchParams()), 10);
    expect(back).toEqual([big, wide, rec(3)].map((r) => ensureSummary(structuredClone(r))));
    expect(back[0]!.summary).toMatch(/^web\/client:40000 -> web\/server:1 TCP/);
    // Overwritten slots forget the large record.
    store.add(rec(4));
    expect(store.latest(flowFilterOf(new URLSearchParams()), 10).map((r) => r.destination.port)).toEqual([2, 3, 4]);
  });
});

describe('parseSelectorText', () => {
  const labels = { app: 'web', tier: 'front', env: 'prod' };
  const m = (text: string) => selectorMatches(parseSelectorText(text), labels);

  it('reads what kubectl -l reads', () => {
    expect(m('app=web')).toBe(true);
    expect(m('app==web,tier=front')).toBe(true);
    expect(m('app!=web')).toBe(false);
    expect(m('missing!=x')).toBe(true);
    expect(m('env in (prod, staging)')).toBe(true);
    expect(m('env notin (prod)')).toBe(false);
    expect(m('tier')).toBe(true);
    expect(m('!tier')).toBe(false);
    expect(m('!missing')).toBe(true);
    expect(m('')).toBe(true);
  });

  it('refuses what it cannot read', () => {
    for (const bad of ['a in (b', 'a)', 'a=b,,c=d', 'a in ()', '=b', 'a b']) expect(() => parseSelectorText(bad), bad).toThrow(SelectorSyntaxError);
  });
});

describe('PolicyNamer', () => {
  const podOf = (name: string, ip: string): PolicyPod => ({ namespace: 'web', name, labels: { app: name }, ips: [ip], ports: [] });
  const view: ClusterView = {
    namespaces: new Map([['web', {}]]),
    pods: [podOf('client', '10.0.0.1'), podOf('server', '10.0.0.2')],
    policies: [{ namespace: 'web', name: 'from-client', podSelector: { matchLabels: { app: 'server' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }] }] }],
  };

  it('names the rule of every flow a hostile pod opens to a new port each time, compiling the cluster once per revision, not once per port', () => {
    const compiles = vi.spyOn(Compilation, 'of');
    try {
      let revision = 1;
      const namer = new PolicyNamer({ revision: () => revision, view: () => view, explainOptions: () => ({}) });
      for (let port = 1000; port < 1500; port++) {
        const r = flowRecordOf(event({ dport: port }), naming, BOOT_MS);
        expect(namer.policiesOf(r), String(port)).toEqual([{ namespace: 'web', name: 'from-client', direction: 'ingress', rule: 0 }]);
      }
      expect(compiles).toHaveBeenCalledTimes(1);
      revision = 2; // a policy change: compiled again, once
      namer.policiesOf(flowRecordOf(event({ dport: 80 }), naming, BOOT_MS));
      expect(compiles).toHaveBeenCalledTimes(2);
    } finally {
      compiles.mockRestore();
    }
  });

  it('under churn in a large cluster, compiles at most once per REFRESH_FACTOR times a compilation, naming from the last one meanwhile', () => {
    const compiles = vi.spyOn(Compilation, 'of');
    try {
      let clock = 0;
      let revision = 1;
      // Each compilation "takes" 200 ms of the injected clock, as at 20,000 pods.
      const namer = new PolicyNamer({ revision: () => revision, view: () => view, explainOptions: () => ((clock += 200), {}) }, () => {}, () => clock);
      // A revision every 10 ms, a record every 1 ms, for 10 s.
      for (let t = 0; t < 10_000; t++) {
        clock += 1;
        if (t % 10 === 0) revision++;
        expect(namer.policiesOf(flowRecordOf(event({ dport: 80 }), naming, BOOT_MS))).toEqual([{ namespace: 'web', name: 'from-client', direction: 'ingress', rule: 0 }]);
      }
      // 10 s + 200 ms per compilation: one every 2 s at most.
      expect(compiles.mock.calls.length).toBeLessThanOrEqual(Math.ceil((10_000 + 200 * compiles.mock.calls.length) / (REFRESH_FACTOR * 200)) + 1);
      expect(compiles.mock.calls.length).toBeLessThan(10);
      expect(compiles.mock.calls.length).toBeGreaterThan(2);
      // A fast compilation is never held back: every revision is named from.
      const fast = new PolicyNamer({ revision: () => revision, view: () => view, explainOptions: () => ((clock += 1), {}) }, () => {}, () => clock);
      compiles.mockClear();
      for (let i = 0; i < 50; i++) {
        revision++;
        fast.policiesOf(flowRecordOf(event({ dport: 80 }), naming, BOOT_MS));
      }
      expect(compiles).toHaveBeenCalledTimes(50);
    } finally {
      compiles.mockRestore();
    }
  });
});

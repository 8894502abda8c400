/**
 * A filtered view of the agent's flows (`sluice ui`): the records held and
 * those followed are counted once each, though the two overlap; identical
 * records that really came twice count twice; a lost stream reopens and
 * takes only what it missed; the agent's errors reach the page.
 */
import { describe, expect, it } from 'vitest';
import type { FlowRecord, FlowsResponse } from '../contract/flows.ts';
import { FlowView, filterQuery, type FlowSource } from '../ui/flow-view.ts';

const T0 = Date.now();

function rec(ms: number, port = 40000): FlowRecord {
  return {
    time: new Date(T0 + ms).toISOString(),
    type: 'flow',
    verdict: 'ALLOWED',
    reason: 'no policy',
    source: { ip: '10.0.0.2', port, identity: 301, name: 'x/b', namespace: 'x', pod: 'b' },
    destination: { ip: '10.0.0.1', port: 80, identity: 300, name: 'x/a', namespace: 'x', pod: 'a' },
    protocol: 'TCP',
    direction: '',
    isReply: false,
    interface: { index: 3 },
    bytes: 60,
    summary: '',
  };
}

/** The agent, scripted: `held` is its ring; onFetch runs before a fetch answers (records arriving meanwhile). */
class FakeAgent implements FlowSource {
  held: FlowRecord[] = [];
  queries: string[] = [];
  followers: { onRecord: (r: FlowRecord) => void; onEnd: (err?: Error) => void }[] = [];
  onFetch: () => void = () => {};
  failWith: Error | undefined;

  async fetch(query: URLSearchParams): Promise<FlowsResponse> {
    this.queries.push(query.toString());
    await Promise.resolve();
    this.onFetch();
    if (this.failWith) throw this.failWith;
    return { flows: this.held.slice(-Number(query.get('last'))), held: this.held.length, capacity: 100, lost: { datapath: 1, followers: 2 } };
  }

  follow(query: URLSearchParams, onRecord: (r: FlowRecord) => void, onEnd: (err?: Error) => void): () => void {
    this.queries.push(`${query}&follow`);
    const f = { onRecord, onEnd };
    this.followers.push(f);
    return () => this.followers.splice(this.followers.indexOf(f), 1);
  }

  /** A new record: into the ring and to every follower. */
  push(r: FlowRecord): void {
    this.held.push(r);
    for (const f of this.followers) f.onRecord(r);
  }
}

const allowed = (view: FlowView) => view.map.snapshot(Date.now()).edges[0]?.counts.allowed ?? 0;
const settle = () => new Promise((r) => setTimeout(r, 20));

describe('FlowView', () => {
  it('counts once the records both held and followed, and twice identical records that came twice', async () => {
    const agent = new FakeAgent();
    agent.held = [rec(0), rec(1)];
    // Between the follow and the ring's answer, rec(2) arrives: the stream has it and so does the ring.
    agent.onFetch = () => {
      agent.onFetch = () => {};
      agent.push(rec(2));
    };
    const view = new FlowView(agent, filterQuery(new URLSearchParams('pod=x/a&junk=1&verdict=')), 10_000);
    view.start();
    await settle();
    expect(agent.queries).toEqual(['pod=x%2Fa&follow', 'pod=x%2Fa&last=1000']);
    expect(allowed(view)).toBe(3);
    expect(view.feedState()).toEqual({ connected: true, held: 3, capacity: 100, lost: { datapath: 1, followers: 2 } });

    agent.push(rec(3));
    agent.push(rec(3));
    expect(allowed(view)).toBe(5);
    expect(view.recent(2).map((r) => r.time)).toEqual([rec(3).time, rec(3).time]);
    view.stop();
    expect(agent.followers).toHaveLength(0);
  });

  it('reopens a lost stream and takes from the ring only what it missed meanwhile', async () => {
    const agent = new FakeAgent();
    agent.held = [rec(0), rec(1, 1), rec(1, 1)];
    const view = new FlowView(agent, new URLSearchParams(), 10_000);
    view.start();
    await settle();
    expect(allowed(view)).toBe(3);

    agent.followers.shift()!.onEnd(new Error('the agent restarted'));
    expect(view.feedState()).toMatchObject({ connected: false, error: 'the agent restarted' });
    // Missed while away: one more record alike the last two, and a newer one.
    agent.held.push(rec(1, 1), rec(5));
    await new Promise((r) => setTimeout(r, 2_300));
    expect(agent.followers).toHaveLength(1);
    expect(allowed(view)).toBe(5);
    expect(view.feedState().connected).toBe(true);
    view.stop();
  });

  it('says what the agent answered when it refuses the filters', async () => {
    const agent = new FakeAgent();
    agent.failWith = new Error('verdict "MAYBE" is not one of ALLOWED, DENIED, DROPPED');
    const view = new FlowView(agent, new URLSearchParams('verdict=MAYBE'), 10_000);
    view.start();
    await settle();
    expect(view.feedState()).toEqual({ connected: false, error: 'verdict "MAYBE" is not one of ALLOWED, DENIED, DROPPED' });
    view.stop();
  });
});

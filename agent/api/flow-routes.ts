/**
 * GET /v1/flows?last=N&<filters>: the newest N flow records that match,
 * oldest first, with what was lost (FlowsResponse). With follow=1, an NDJSON
 * stream of the records that match from now on (after the last N, when
 * last is given). Filters: contract/flows.ts FlowFilter.
 */
import type { FlowsResponse } from '../../contract/flows.ts';
import { FlowFilterError, flowFilterOf } from '../flows/filter.ts';
import type { FlowRecorder } from '../flows/recorder.ts';
import type { FlowStore } from '../flows/store.ts';
import { ApiFailure, StreamResponse, type Route } from './server.ts';

/** Records a request gets when it names no `last`. */
const DEFAULT_LAST = 100;

/** What the flow routes read. */
export interface FlowRouteContext {
  store: FlowStore;
  recorder: Pick<FlowRecorder, 'losses'>;
}

function lastOf(q: URLSearchParams, capacity: number, fallback: number): number {
  const text = q.get('last');
  if (text === null || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new ApiFailure(400, 'BadRequest', `last "${text}" is not a count (0 or more)`);
  return Math.min(n, capacity);
}

/** The flow routes. */
export function flowRoutes(ctx: FlowRouteContext): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/v1/flows',
      handler: ({ query }) => {
        let filter;
        try {
          filter = flowFilterOf(query);
        } catch (err: unknown) {
          if (err instanceof FlowFilterError) throw new ApiFailure(400, 'BadRequest', err.message);
          throw err;
        }
        const follow = query.get('follow') === '1' || query.get('follow') === 'true';
        if (follow) {
          const first = ctx.store.latest(filter, lastOf(query, ctx.store.capacity, 0));
          return new StreamResponse((writeLine) => {
            for (const r of first) writeLine(r);
            return ctx.store.follow(filter, (r) => writeLine(r));
          });
        }
        const response: FlowsResponse = {
          flows: ctx.store.latest(filter, lastOf(query, ctx.store.capacity, DEFAULT_LAST)),
          held: ctx.store.held(),
          capacity: ctx.store.capacity,
          lost: ctx.recorder.losses(),
        };
        return response;
      },
    },
  ];
}

/**
 * Runtime security API: GET /v1/security (on or off and why, the hook kinds
 * this kernel runs, rules loaded and the errors of those that did not, what
 * the sensor received and lost); GET /v1/security/events?pod=&rule=&alerts=1
 * &last=N[&follow=1]: the latest events and alerts, or an NDJSON stream.
 */
import type { SecurityModeProbe } from '../../datapath/security-probe.ts';
import type { SecurityItem, SecurityRuntime, SecurityStatus } from '../security/runtime.ts';
import { ApiFailure, StreamResponse, type Route } from './server.ts';

/** GET /v1/security. */
export interface SecurityResponse extends SecurityStatus {
  /** Which kinds of tracing hooks load and attach on this kernel (fentry, kprobes and BPF LSM do not here). */
  modes: SecurityModeProbe[];
}

/** GET /v1/security/events (without follow). */
export interface SecurityEventsResponse {
  items: SecurityItem[];
  /** Events the kernel could not send, and items slow followers missed, since the agent started. */
  lost: { kernel: number; followers: number };
}

export interface SecurityRouteContext {
  runtime: SecurityRuntime | null;
  /** Why runtime security is off, when it is. */
  reason: string;
  modes: SecurityModeProbe[];
}

export function securityRoutes(ctx: SecurityRouteContext): Route[] {
  const runtime = () => {
    if (!ctx.runtime) throw new ApiFailure(409, 'SecurityOff', `runtime security is off: ${ctx.reason}`);
    return ctx.runtime;
  };
  return [
    {
      method: 'GET',
      pattern: '/v1/security',
      handler: (): SecurityResponse =>
        ctx.runtime
          ? { ...ctx.runtime.status(), modes: ctx.modes }
          : { enabled: false, reason: ctx.reason, ruleFiles: [], rules: 0, errors: [], kill: 0, denyConnect: 0, modes: ctx.modes },
    },
    {
      method: 'GET',
      pattern: '/v1/security/events',
      handler: ({ query }) => {
        const r = runtime();
        const filter = { pod: query.get('pod') || undefined, rule: query.get('rule') || undefined, alerts: query.get('alerts') === '1' || query.get('alerts') === 'true' };
        const lastText = query.get('last');
        const last = lastText === null || lastText === '' ? undefined : Number(lastText);
        if (last !== undefined && (!Number.isInteger(last) || last < 0)) throw new ApiFailure(400, 'BadRequest', `last "${lastText}" is not a count`);
        if (query.get('follow') === '1' || query.get('follow') === 'true') {
          const first = r.latest(filter, last ?? 0);
          return new StreamResponse((writeLine) => {
            for (const item of first) writeLine(item);
            return r.follow(filter, (item) => writeLine(item));
          });
        }
        const response: SecurityEventsResponse = { items: r.latest(filter, last ?? 100), lost: { kernel: r.status().stats?.lost.total ?? 0, followers: r.followerLosses } };
        return response;
      },
    },
  ];
}

/**
 * The agent's IPAM read and reconcile routes: GET /v1/ipam (pools, every
 * allocation, stale ones flagged) and POST /v1/ipam/reconcile (release what
 * belongs to containers that are gone; the CNI GC verb calls it).
 */
import type { Ipam } from '../../ipam/allocator.ts';
import { ApiFailure, type Route } from './server.ts';
import type { IpamAllocation, IpamResponse, ReconcileResponse } from '../../contract/api-types.ts';
import type { EndpointManager } from '../endpoints.ts';
import { DEFAULT_IPAM_GC_GRACE_MS, reconcileIpam } from '../reclaim/ipam-reconcile.ts';
import { log } from '../log.ts';

/** What the IPAM routes act on. */
export interface IpamRouteContext {
  ipam: Ipam;
  endpoints: Pick<EndpointManager, 'list' | 'unregister'>;
  podExists?: ((namespace: string, name: string) => boolean) | undefined;
  podsRunningHere?: (() => ReadonlySet<string>) | undefined;
  ipamGcGraceMs?: number | undefined;
}

/** GET /v1/ipam's body: pools, allocations (stale ones flagged), and the stale ones again. */
export function ipamReport(ipam: Ipam): IpamResponse {
  const stale = new Map(ipam.stale().map((s) => [s.ip, s.reason]));
  const allocations: IpamAllocation[] = ipam.list().map((a) => {
    const reason = stale.get(a.ip);
    return reason ? { ...a, stale: reason } : a;
  });
  return {
    pools: ipam.usage(),
    allocations,
    stale: allocations.filter((a): a is IpamAllocation & { stale: string } => a.stale !== undefined),
  };
}

function parseValidAttachments(raw: unknown): { containerID: string; ifname: string }[] | undefined {
  if (raw === undefined) return undefined;
  const ok =
    Array.isArray(raw) &&
    raw.every((a: unknown) => {
      const o = a as Record<string, unknown> | null;
      return typeof o === 'object' && o !== null && typeof o.containerID === 'string' && typeof o.ifname === 'string';
    });
  if (!ok) throw new ApiFailure(400, 'BadRequest', "field 'validAttachments' must be an array of {containerID, ifname} strings");
  return (raw as { containerID: string; ifname: string }[]).map((a) => ({ containerID: a.containerID, ifname: a.ifname }));
}

/** The IPAM routes beyond allocate and release. */
export function ipamRoutes(ctx: IpamRouteContext): Route[] {
  return [
    { method: 'GET', pattern: '/v1/ipam', handler: (): IpamResponse => ipamReport(ctx.ipam) },
    {
      method: 'POST',
      pattern: '/v1/ipam/reconcile',
      handler: ({ body }): ReconcileResponse => {
        const req = (body ?? {}) as Record<string, unknown>;
        if (typeof req !== 'object' || Array.isArray(req)) throw new ApiFailure(400, 'BadRequest', 'request body must be a JSON object');
        const graceMs = req.graceMs ?? ctx.ipamGcGraceMs ?? DEFAULT_IPAM_GC_GRACE_MS;
        if (typeof graceMs !== 'number' || !Number.isFinite(graceMs) || graceMs < 0) {
          throw new ApiFailure(400, 'BadRequest', "field 'graceMs' must be a non-negative number of milliseconds");
        }
        const report = reconcileIpam(
          { ipam: ctx.ipam, endpoints: ctx.endpoints, podExists: ctx.podExists, podsRunningHere: ctx.podsRunningHere, log },
          { graceMs, validAttachments: parseValidAttachments(req.validAttachments), dryRun: req.dryRun === true },
        );
        return report;
      },
    },
  ];
}

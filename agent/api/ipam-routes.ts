/**
 * The agent's IPAM routes: allocate and release (the CNI ADD and its
 * rollback), GET /v1/ipam (pools, every allocation, stale ones flagged) and
 * POST /v1/ipam/reconcile (release what belongs to containers that are gone;
 * the CNI GC verb calls it).
 */
import { IpamRefusedError, PoolExhaustedError, type Ipam } from '../../ipam/allocator.ts';
import { ApiFailure, type Route } from './server.ts';
import type { AllocateRequest, AllocateResponse, IpamAllocation, IpamResponse, ReconcileResponse, ReleaseRequest } from '../../contract/api-types.ts';
import type { EndpointManager } from '../endpoints.ts';
import { DEFAULT_IPAM_GC_GRACE_MS, reconcileIpam } from '../reclaim/ipam-reconcile.ts';
import { log } from '../log.ts';
import type { StateDisk } from '../state-disk.ts';
import { requireObject, requireString } from './body.ts';

/** What the IPAM routes act on. */
export interface IpamRouteContext {
  ipam: Ipam;
  endpoints: Pick<EndpointManager, 'list' | 'unregister'>;
  podExists?: ((namespace: string, name: string) => boolean) | undefined;
  podsRunningHere?: (() => ReadonlySet<string>) | undefined;
  ipamGcGraceMs?: number | undefined;
  /** What an ADD attaches to its host veth, answered with its addresses. */
  attachment: () => AllocateResponse['datapath'];
  /** The MTU pods must use (VXLAN overlay), undefined when the CNI's own is right. */
  podMtu: () => number | undefined;
  /** The state directory's health: allocations are refused while it refuses writes. */
  stateDisk: Pick<StateDisk, 'requireWritable'>;
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

/** The IPAM routes. */
export function ipamRoutes(ctx: IpamRouteContext): Route[] {
  return [
    {
      method: 'POST',
      pattern: '/v1/ipam/allocate',
      handler: ({ body }): AllocateResponse => {
        const req = requireObject(body);
        ctx.stateDisk.requireWritable();
        const key: AllocateRequest = {
          containerID: requireString(req, 'containerID'),
          ifname: requireString(req, 'ifname'),
          namespace: requireString(req, 'namespace', true),
          pod: requireString(req, 'pod', true),
          netns: requireString(req, 'netns', true),
        };
        try {
          const ips = ctx.ipam.allocate(key).map((a) => ({
            address: `${a.ip}/${a.prefixLength}`,
            gateway: a.gateway,
            family: a.family,
          }));
          const mtu = ctx.podMtu();
          return { ips, datapath: ctx.attachment(), ...(mtu === undefined ? {} : { mtu }) };
        } catch (err: unknown) {
          if (err instanceof PoolExhaustedError) throw new ApiFailure(503, 'PoolExhausted', err.message);
          if (err instanceof IpamRefusedError) throw new ApiFailure(503, 'TryAgain', err.message);
          throw err;
        }
      },
    },
    {
      method: 'POST',
      pattern: '/v1/ipam/release',
      handler: ({ body }) => {
        const req = requireObject(body) as Partial<ReleaseRequest>;
        const released = ctx.ipam.release({
          containerID: requireString(req, 'containerID'),
          ifname: requireString(req, 'ifname'),
        });
        return { released };
      },
    },
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

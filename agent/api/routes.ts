/**
 * The agent's API routes: IPAM, endpoints, status and counters, wired to the
 * components that do the work.
 */
import { parseIp, parseMac } from '../../lib/ip-bytes.ts';
import { PoolExhaustedError, type Ipam } from '../../ipam/allocator.ts';
import type { Datapath } from '../../datapath/loader.ts';
import { ApiFailure, type Route } from './server.ts';
import type { AllocateRequest, AllocateResponse, AttachmentResponse, EndpointSpec, ReleaseRequest } from '../../contract/api-types.ts';
import { EndpointNotServedError, type EndpointManager } from '../endpoints.ts';
import { ipamRoutes } from './ipam-routes.ts';
import { policyRoutes } from './policy-routes.ts';
import { monitorRoutes } from './monitor-routes.ts';
import type { Monitor } from '../monitor.ts';
import type { PolicyState } from '../policy-sync/state.ts';
import type { MapFill } from '../metrics/map-fill.ts';
import { statusRoute } from './status-route.ts';
import type { StateDisk } from '../state-disk.ts';

/** What the routes act on. */
export interface AgentContext {
  node: string;
  pinDir: string;
  ipam: Ipam;
  endpoints: EndpointManager;
  datapath: Datapath;
  /** The datastore's answer to "does this pod exist" for IPAM reconciliation; undefined until the agent has a datastore. */
  podExists?: (namespace: string, name: string) => boolean;
  podsRunningHere?: (() => ReadonlySet<string>) | undefined;
  /** Grace period of IPAM reconciliation (--ipam-gc-grace-ms). */
  ipamGcGraceMs?: number;
  /** Datastore, identities and the policy maps. */
  policy: PolicyState;
  /** Datapath events. */
  monitor: Monitor;
  /** The MTU pods must use (VXLAN overlay), undefined when the CNI's own is right. */
  podMtu?: () => number | undefined;
  /** Wall-clock ms when the agent started (status). */
  startedAtMs?: number;
  /** Counts the datapath maps' entries now (status ?maps=true). */
  mapFill?: () => Promise<MapFill[]>;
  /** The metrics endpoint (status). */
  metrics?: { address: string | null; listening: boolean };
  /** The state directory's health: ADDs are refused while it refuses writes, DELs defer theirs. */
  stateDisk?: StateDisk;
}

function requireString(body: Record<string, unknown>, field: string, optional = false): string {
  const value = body[field];
  if (value === undefined && optional) return '';
  if (typeof value !== 'string' || (!optional && value === '')) {
    throw new ApiFailure(400, 'BadRequest', `field '${field}' must be a non-empty string`);
  }
  return value;
}

function requireObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiFailure(400, 'BadRequest', 'request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

function parseEndpointSpec(raw: unknown): EndpointSpec {
  const body = requireObject(raw);
  const hostIfindex = body.hostIfindex;
  if (typeof hostIfindex !== 'number' || !Number.isInteger(hostIfindex) || hostIfindex <= 0) {
    throw new ApiFailure(400, 'BadRequest', "field 'hostIfindex' must be a positive integer");
  }
  const ips = body.ips;
  if (!Array.isArray(ips) || ips.length === 0 || !ips.every((ip) => typeof ip === 'string')) {
    throw new ApiFailure(400, 'BadRequest', "field 'ips' must be a non-empty array of addresses");
  }
  const spec = {
    containerID: requireString(body, 'containerID'),
    ifname: requireString(body, 'ifname'),
    namespace: requireString(body, 'namespace', true),
    pod: requireString(body, 'pod', true),
    netns: requireString(body, 'netns', true),
    hostIfname: requireString(body, 'hostIfname'),
    hostIfindex,
    mac: requireString(body, 'mac'),
    hostMac: requireString(body, 'hostMac'),
    ips: ips as string[],
  };
  // Checked here, before anything is stored: the datapath encoders would throw only halfway through a sync.
  for (const field of ['mac', 'hostMac'] as const) {
    try {
      parseMac(spec[field]);
    } catch {
      throw new ApiFailure(400, 'BadRequest', `field '${field}' must be a MAC address like 02:00:00:00:00:01, not '${spec[field]}'`);
    }
  }
  for (const ip of spec.ips) {
    try {
      parseIp(ip);
    } catch {
      throw new ApiFailure(400, 'BadRequest', `field 'ips' holds '${ip}', which is not an IPv4 or IPv6 address`);
    }
  }
  if (new Set(spec.ips.map((ip) => ip.includes(':'))).size !== spec.ips.length) {
    throw new ApiFailure(400, 'BadRequest', "field 'ips' holds at most one IPv4 and one IPv6 address");
  }
  return spec;
}

/** The route table of the agent's API. */
export function agentRoutes(ctx: AgentContext): Route[] {
  return [
    statusRoute(ctx),
    {
      method: 'POST',
      pattern: '/v1/ipam/allocate',
      handler: ({ body }): AllocateResponse => {
        const req = requireObject(body);
        ctx.stateDisk?.requireWritable();
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
          const mtu = ctx.podMtu?.();
          return { ips, datapath: { fromPod: ctx.datapath.progPaths.fromPod, toPod: ctx.datapath.progPaths.toPod, linksDir: `${ctx.pinDir}/links` }, ...(mtu === undefined ? {} : { mtu }) };
        } catch (err: unknown) {
          if (err instanceof PoolExhaustedError) throw new ApiFailure(503, 'PoolExhausted', err.message);
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
    ...ipamRoutes(ctx),
    ...policyRoutes(ctx),
    ...monitorRoutes(ctx),
    { method: 'GET', pattern: '/v1/endpoints', handler: () => ctx.endpoints.list() },
    {
      // The pod's labels must be known before its policy is synced: a remote datastore fetches a pod it has not seen yet.
      method: 'PUT',
      pattern: '/v1/endpoints',
      handler: async ({ body }) => {
        const spec = parseEndpointSpec(body);
        ctx.stateDisk?.requireWritable();
        await ctx.policy.datastore.ensurePod?.(spec.namespace, spec.pod);
        try {
          return ctx.endpoints.register(spec);
        } catch (err: unknown) {
          if (err instanceof EndpointNotServedError) throw new ApiFailure(503, 'TryAgain', err.message);
          throw err;
        }
      },
    },
    {
      // One attachment as the agent knows it (CNI CHECK): its endpoint (null when unregistered) and its addresses.
      method: 'GET',
      pattern: '/v1/endpoints/:containerID/:ifname',
      handler: ({ params }): AttachmentResponse => {
        const [containerID, ifname] = params as [string, string];
        const endpoint = ctx.endpoints.list().find((e) => e.containerID === containerID && e.ifname === ifname) ?? null;
        const addresses = ctx.ipam.list().filter((a) => a.containerID === containerID && a.ifname === ifname).map((a) => a.ip);
        const mtu = ctx.podMtu?.();
        return { endpoint, addresses, linksDir: `${ctx.pinDir}/links`, ...(mtu === undefined ? {} : { mtu }) };
      },
    },
    {
      // Removes the endpoint from the maps and releases its addresses; succeeds when neither exists.
      method: 'DELETE',
      pattern: '/v1/endpoints/:containerID/:ifname',
      handler: ({ params }) => {
        const [containerID, ifname] = params as [string, string];
        const endpoint = ctx.endpoints.unregister(containerID, ifname);
        let released: string[] = [];
        const release = (): void => void (released = ctx.ipam.release({ containerID, ifname }));
        // On a disk that refuses writes the address stays held (never handed out twice) until the disk is back.
        const releaseDeferred = ctx.stateDisk ? !ctx.stateDisk.writeOrDefer(`release the addresses of ${containerID}/${ifname}`, release) : (release(), false);
        return { endpoint, released, linksDir: `${ctx.pinDir}/links`, ...(releaseDeferred ? { releaseDeferred } : {}) };
      },
    },
    { method: 'GET', pattern: '/v1/counters', handler: () => ctx.datapath.readCounters() },
  ];
}

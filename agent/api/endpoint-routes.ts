/**
 * The endpoint routes: list, register (PUT, from the CNI ADD), look up one
 * attachment (CHECK) and remove one (DEL, which also releases its addresses).
 */
import { parseIp, parseMac } from '../../lib/ip-bytes.ts';
import type { Ipam } from '../../ipam/allocator.ts';
import type { AttachmentResponse, EndpointSpec } from '../../contract/api-types.ts';
import { clusterView } from '../datastore/cluster-view.ts';
import type { Datastore } from '../datastore/datastore.ts';
import { log } from '../log.ts';
import { endpointsWithUnknownLabels } from '../../policy/unknown-labels.ts';
import { EndpointNotServedError, type EndpointManager } from '../endpoints.ts';
import type { StateDisk } from '../state-disk.ts';
import { requireObject, requireString } from './body.ts';
import { ApiFailure, type Route } from './server.ts';
import { checkRegistration, type HostInterfaceReader } from './registration-check.ts';

/** What the endpoint routes act on. */
export interface EndpointRouteContext {
  endpoints: EndpointManager;
  ipam: Ipam;
  /** Asked for a pod it has not seen yet before its policy is synced (a remote datastore fetches it). */
  datastore: Pick<Datastore, 'ensurePod' | 'objects'>;
  /** Where the CNI plugin pins its TCX links. */
  linksDir: string;
  /** The MTU pods must use (VXLAN overlay), undefined when the CNI's own is right. */
  podMtu: () => number | undefined;
  /** The state directory's health: registrations are refused while it refuses writes, DELs defer theirs. */
  stateDisk: StateDisk;
  /** Host interfaces a registration names (default: /sys/class/net). */
  readInterface?: HostInterfaceReader;
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

/** The endpoint routes. */
export function endpointRoutes(ctx: EndpointRouteContext): Route[] {
  return [
    { method: 'GET', pattern: '/v1/endpoints', handler: () => ctx.endpoints.list() },
    {
      // The pod's labels must be known before its policy is synced: a remote datastore fetches a pod it has not seen yet.
      method: 'PUT',
      pattern: '/v1/endpoints',
      handler: async ({ body }) => {
        const spec = parseEndpointSpec(body);
        await checkRegistration(spec, ctx.ipam.addressesOf(spec.containerID, spec.ifname), ctx.endpoints.list(), ctx.readInterface);
        ctx.stateDisk.requireWritable();
        await ctx.datastore.ensurePod?.(spec.namespace, spec.pod);
        try {
          const endpoint = ctx.endpoints.register(spec);
          const local = { endpointId: endpoint.id, namespace: spec.namespace, pod: spec.pod, ips: spec.ips };
          if (endpointsWithUnknownLabels(clusterView(ctx.datastore.objects()), [local]).size > 0) {
            log(`endpoint ${endpoint.id} of ${spec.namespace}/${spec.pod}: its labels are not known yet (the datastore has not delivered the pod or its namespace), isolated in both directions until they are`);
          }
          return endpoint;
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
        const mtu = ctx.podMtu();
        return { endpoint, addresses, linksDir: ctx.linksDir, ...(mtu === undefined ? {} : { mtu }) };
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
        const releaseDeferred = !ctx.stateDisk.writeOrDefer(`release the addresses of ${containerID}/${ifname}`, release);
        return { endpoint, released, linksDir: ctx.linksDir, ...(releaseDeferred ? { releaseDeferred } : {}) };
      },
    },
  ];
}

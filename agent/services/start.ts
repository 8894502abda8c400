/**
 * The agent's Services part: loads the socket load balancer (or adopts it),
 * keeps its maps equal to the service table built from the datastore, and
 * reports it for GET /v1/services. startServices takes everything it needs;
 * agent/main.ts calls sync() after each policy sync (which follows every
 * datastore change) and on the Kubernetes datastore's service events.
 */
import type { Datastore } from '../datastore/datastore.ts';
import type { KubeObject } from '../datastore/local.ts';
import { loadServiceLb, type LbMapSizes, type LoadServiceLbOptions, type ServiceLb, type ServiceLbMapName, type ServiceLbMaps } from '../../datapath/service-lb-loader.ts';
import { countEntries, type MapFill } from '../metrics/map-fill.ts';
import { encodeBackendId, sumBackendFlows } from '../../datapath/service-lb-abi.ts';
import { serviceFrontends, serviceKeyOf, sliceOwner, type ServiceEndpointInputs, type ServiceInputs } from './table.ts';
import { ServiceMapSync, type LbSizedMap, type LbSyncStats } from './sync.ts';
import { DesiredFrontends } from './desired.ts';
import type { ServiceChangeIndex } from './service-changes.ts';
import { destroyStaleUdpSockets } from './stale-sockets.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { ServicesResponse } from '../../contract/services.ts';

/** A datastore that keeps Services apart from the objects policy reads (KubernetesDatastore). */
interface ServiceWatchingDatastore {
  serviceObjects(): { services: KubeObject[]; endpoints: KubeObject[]; endpointSlices: KubeObject[] };
  onServicesChange(listener: () => void): void;
  /** Which Services each change touched (absent: every sync rebuilds the whole table). */
  serviceChanges?: ServiceChangeIndex;
}

function watchesServices(d: object): d is ServiceWatchingDatastore {
  return typeof (d as Partial<ServiceWatchingDatastore>).serviceObjects === 'function';
}

/**
 * What the table is built from: a Kubernetes datastore's Services, Endpoints
 * and EndpointSlices; else (the local directory) its Services, with endpoints
 * derived from its pods.
 */
export function serviceInputsOf(datastore: Datastore): ServiceInputs {
  if (watchesServices(datastore)) return datastore.serviceObjects();
  const objects = datastore.objects();
  return { services: objects.services ?? [], pods: objects.pods };
}

/** The maps whose fill sluice status shows (lb_backend_flows is an array: always full). */
const FILL_MAPS: ServiceLbMapName[] = ['lb_services', 'lb_backends', 'lb_revnat', 'lb_affinity'];

/** Every Service's frontends, built from scratch (the full sync; the reference the incremental one is tested against). */
export function desiredFrontendsOf(inputs: ServiceInputs, nodeAddresses: string[]): DesiredFrontends {
  const desired = new DesiredFrontends();
  const slices = new Map<string, KubeObject[]>();
  for (const slice of inputs.endpointSlices ?? []) {
    const owner = sliceOwner(slice);
    if (owner) slices.set(owner, [...(slices.get(owner) ?? []), slice]);
  }
  const endpoints = new Map((inputs.endpoints ?? []).map((e) => [serviceKeyOf(e), e]));
  for (const service of inputs.services) {
    const key = serviceKeyOf(service);
    const own: ServiceEndpointInputs = { endpointSlices: slices.get(key), endpoints: endpoints.get(key), pods: inputs.pods };
    desired.setService(key, serviceFrontends(service, own), nodeAddresses);
  }
  return desired;
}

/** What startServices needs. */
export interface StartServicesOptions {
  /** --socket-lb: false attaches no socket hooks (and, without linkDatapath, loads nothing and reports the load balancer off). */
  enabled: boolean;
  /** <bpf-dir>/service-lb, the object's bytes, the cgroup v2 root (null: none mounted). */
  pinDir: string;
  objectBytes: () => Buffer;
  cgroupRoot: string | null;
  datastore: Datastore;
  log: (msg: string) => void;
  /** The maps' sizes (--lb-*-max; default bpf/service-lb.h's). */
  sizes?: LbMapSizes;
  /** This node's addresses (e.g. policy.hostAddresses()): NodePort Services are served on each. */
  nodeAddresses?: () => string[];
  /** The network namespaces of the node's pods (e.g. the endpoints' netns paths): where stale UDP sockets are destroyed. */
  podNetns?: () => string[];
  /**
   * Hands the frontend and backend maps to the datapath's per-packet
   * translation (datapath/service-nat.ts linkServiceNat). Given, the maps are
   * loaded also with --socket-lb off (without the socket hooks), and from_pod
   * translates every Service packet.
   */
  linkDatapath?: (maps: ServiceLbMaps) => void;
  /** For tests: the loader (default loadServiceLb), and what destroys stale UDP sockets (default destroyStaleUdpSockets). */
  load?: (options: LoadServiceLbOptions) => ServiceLb;
  destroyUdp?: (backends: { address: string; port: number }[], netnsPaths: string[]) => Promise<string[]>;
}

/** What one sync did: the map writes, and how many Services it rebuilt. */
export type ServicesSyncStats = LbSyncStats & { servicesBuilt: number };

/** The running Services part. */
export interface Services {
  /**
   * Writes what changed since the last sync: only the Services the datastore
   * says a change touched when it says so (KubernetesDatastore), else the
   * whole table; never throws (failures go to report()).
   */
  sync(): ServicesSyncStats | null;
  /** Resolves once the stale UDP sockets of the syncs so far are destroyed. */
  settled(): Promise<void>;
  /** The body of GET /v1/services. */
  report(): ServicesResponse;
  /** The fill of the load balancer's maps, with the entries refused because one was full (for sluice status); [] when off. */
  mapFill(): Promise<(MapFill & { refused?: number })[]>;
  /** Closes the map fds; the pinned programs keep serving Services while the agent is away. */
  close(): void;
}

/**
 * Loads (or adopts) the load balancer and syncs it once; a Kubernetes
 * datastore's service events sync it again. Never throws: a load balancer
 * that cannot load is reported off with the reason (policy and pods go on).
 */
export function startServices(options: StartServicesOptions): Services {
  let lb: ServiceLb | null = null;
  let sync: ServiceMapSync | null = null;
  let reason: string | undefined = options.enabled ? undefined : '--socket-lb off';
  let desired = new DesiredFrontends();
  /** The node addresses the NodePort copies were made on, joined: a change rebuilds everything. */
  let nodeAddressesSeen: string | null = null;
  let syncError: string | null = null;
  /** Entries refused because their map was full, since start. */
  const refused: Partial<Record<LbSizedMap, number>> = {};
  let destroying: Promise<void> = Promise.resolve();
  // With --socket-lb off (or no cgroup v2 to attach to), the maps alone still serve the datapath's per-packet translation.
  const attach = options.enabled && options.cgroupRoot !== null;
  if (options.enabled && options.cgroupRoot === null) reason = 'no cgroup v2 hierarchy is mounted';
  if (attach || options.linkDatapath) {
    try {
      lb = (options.load ?? loadServiceLb)({ pinDir: options.pinDir, objectBytes: options.objectBytes(), cgroupRoot: options.cgroupRoot ?? '', attach, ...(options.sizes ? { sizes: options.sizes } : {}) });
      sync = new ServiceMapSync(lb.maps, lb.sizes ? { maxEntries: { lb_services: lb.sizes.lb_services, lb_backends: lb.sizes.lb_backend_flows } } : {});
      options.linkDatapath?.(lb.maps);
      if (!attach) reason = `${reason ?? '--socket-lb off'}: Services translated per packet in from-pod`;
      options.log(attach ? `socket load balancer ${lb.adopted ? 'adopted' : 'loaded'} at ${options.cgroupRoot}${lb.attached.length ? ` (attached ${lb.attached.join(', ')})` : ''}` : `services: ${reason}`);
      if (lb.resized?.length) options.log(`socket load balancer maps resized: ${lb.resized.join(', ')}`);
      if (lb.resizeRefused) options.log(`socket load balancer maps kept at their pinned sizes (${Object.entries(lb.sizes).map(([m, n]) => `${m} ${n}`).join(', ')}): ${lb.resizeRefused}`);
    } catch (err: unknown) {
      reason = `load the socket load balancer: ${errorMessage(err)}`;
      // Maps nothing reads serve nothing.
      if (!attach) sync = null;
      options.log(reason);
    }
  }

  const services: Services = {
    sync() {
      if (!sync) return null;
      try {
        const started = performance.now();
        const nodeAddresses = options.nodeAddresses?.() ?? [];
        const index = watchesServices(options.datastore) ? options.datastore.serviceChanges : undefined;
        let stats: ServicesSyncStats;
        if (index && nodeAddressesSeen === nodeAddresses.join(',')) {
          // Incremental: rebuild the Services a change touched, diff the frontends they claim(ed).
          const keys = index.take();
          const touched = new Set<string>();
          for (const key of keys) {
            const { service, inputs } = index.inputsFor(key);
            for (const fk of desired.setService(key, service ? serviceFrontends(service, inputs) : [], nodeAddresses)) touched.add(fk);
          }
          stats = { ...sync.update(new Map([...touched].map((fk) => [fk, desired.frontend(fk)]))), servicesBuilt: keys.length };
        } else {
          // Full: every Service again (the first sync, a node address change, a datastore without a change index).
          index?.take();
          desired = desiredFrontendsOf(serviceInputsOf(options.datastore), nodeAddresses);
          nodeAddressesSeen = nodeAddresses.join(',');
          stats = { ...sync.apply(desired.table()), servicesBuilt: [...desired.services()].length };
        }
        stats.durationMs = performance.now() - started;
        for (const [map, n] of Object.entries(stats.full) as [LbSizedMap, number][]) refused[map] = (refused[map] ?? 0) + n;
        syncError = stats.failed.length > 0 ? stats.failed.join('; ') : null;
        if (stats.written + stats.deleted > 0) options.log(`services: ${stats.written} map entries written, ${stats.deleted} deleted in ${stats.durationMs.toFixed(1)} ms`);
        if (syncError) options.log(`services sync incomplete (retried on the next change): ${syncError}`);
        if (stats.udpBackendsGone.length > 0) {
          const gone = stats.udpBackendsGone;
          destroying = destroying
            .then(() => (options.destroyUdp ?? destroyStaleUdpSockets)(gone, options.podNetns?.() ?? []))
            .then((failures) => {
              for (const f of failures) options.log(`destroy UDP sockets of backends that left: ${f}`);
            });
        }
        return stats;
      } catch (err: unknown) {
        syncError = errorMessage(err);
        options.log(`services sync failed: ${syncError}`);
        return null;
      }
    },
    settled() {
      return destroying;
    },
    report() {
      const flows = (id: number | undefined) => (id === undefined || !lb ? 0 : sumBackendFlows(lb.maps.lb_backend_flows.lookupPerCpu(encodeBackendId(id))));
      return {
        enabled: sync !== null,
        ...(reason ? { reason } : {}),
        syncError,
        frontends: desired.table().map((f) => ({
          namespace: f.namespace,
          name: f.name,
          portName: f.portName,
          type: f.type,
          address: f.address,
          port: f.port,
          protocol: f.protocol,
          ...(f.nodePort ? { nodePort: f.nodePort } : {}),
          sessionAffinity: f.sessionAffinity,
          served: sync !== null && f.protocol !== 'SCTP' && sync.serves(f.address, f.port, f.protocol),
          backends: f.backends.map((b) => ({
            address: b.address,
            port: b.port,
            state: b.terminating ? 'terminating' : b.ready ? 'ready' : 'not-ready',
            ...(b.pod ? { pod: b.pod } : {}),
            newFlows: b.ready && !b.terminating && f.protocol !== 'SCTP' ? flows(sync?.backendId(b.address, b.port, f.protocol)) : 0,
          })),
        })),
      };
    },
    async mapFill() {
      if (!lb) return [];
      const out: (MapFill & { refused?: number })[] = [];
      for (const name of FILL_MAPS) {
        const counted = await countEntries(lb.maps[name]);
        out.push({ name, maxEntries: lb.sizes?.[name] ?? 0, ...counted, ...(name in refused ? { refused: refused[name as LbSizedMap] } : {}) });
      }
      return out;
    },
    close() {
      lb?.close();
    },
  };
  if (watchesServices(options.datastore)) options.datastore.onServicesChange(() => services.sync());
  services.sync();
  return services;
}

/**
 * Services and their endpoints → the load balancer's table: one frontend per
 * (Service address, port, protocol), each with the backends it may choose.
 * The one place that reads the API's Service, Endpoints and EndpointSlice
 * fields. Pure: no I/O, no kernel.
 *
 * Where the endpoints come from, per Service, as kube-proxy 1.20 reads them:
 * its EndpointSlices when any exist (discovery.k8s.io/v1beta1, labelled
 * kubernetes.io/service-name), else its v1 Endpoints, else (the local
 * cluster, which has no endpoints controller) the pods its selector matches.
 */
import net from 'node:net';
import type { KubeObject } from '../datastore/local.ts';
import type { LabelSelector } from '../../policy/types.ts';
import { selectorMatches } from '../../policy/selector.ts';

export type ServiceProtocol = 'TCP' | 'UDP' | 'SCTP';
export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer';

/** Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds (3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SEC = 10_800;

/** One address a frontend may send a new flow to. */
export interface ServiceBackend {
  address: string;
  port: number;
  /** Ready endpoints take new flows; others are listed, never chosen. */
  ready: boolean;
  terminating: boolean;
  /** "namespace/name" of the pod behind it, when known. */
  pod?: string;
}

/** One Service address + port + protocol, and its backends (sorted, so equal inputs give equal tables). */
export interface ServiceFrontend {
  namespace: string;
  name: string;
  /** The Service port's name ('' when unnamed). */
  portName: string;
  type: ServiceType;
  address: string;
  port: number;
  protocol: ServiceProtocol;
  nodePort?: number;
  sessionAffinity: 'None' | 'ClientIP';
  affinityTimeoutSec: number;
  backends: ServiceBackend[];
}

/** A Service port as the API writes it. */
interface ServicePortSpec {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: ServiceProtocol;
  nodePort?: number;
}

interface ServiceSpec {
  type?: string;
  selector?: Record<string, string>;
  clusterIP?: string;
  clusterIPs?: string[];
  ports?: ServicePortSpec[];
  sessionAffinity?: string;
  sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
}

/** An endpoint address and the ports it serves, whatever object it came from. */
interface EndpointSet {
  addresses: { ip: string; ready: boolean; terminating: boolean; pod?: string }[];
  /** Port name → port and protocol. */
  ports: { name: string; port: number; protocol: ServiceProtocol }[];
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

function keyOf(o: KubeObject): string {
  return `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
}

function podRef(ref: unknown): string | undefined {
  const r = ref as { kind?: string; namespace?: string; name?: string } | undefined;
  return r?.kind === 'Pod' && r.name ? `${r.namespace ?? ''}/${r.name}` : undefined;
}

/** v1 Endpoints: addresses are ready, notReadyAddresses are not (v1 Endpoints knows no terminating). */
export function endpointSetsOfEndpoints(obj: KubeObject): EndpointSet[] {
  const subsets = ((obj as unknown as { subsets?: unknown[] }).subsets ?? []) as {
    addresses?: { ip: string; targetRef?: unknown }[];
    notReadyAddresses?: { ip: string; targetRef?: unknown }[];
    ports?: { name?: string; port: number; protocol?: ServiceProtocol }[];
  }[];
  return subsets.map((s) => ({
    addresses: [
      ...(s.addresses ?? []).map((a) => ({ ip: a.ip, ready: true, terminating: false, pod: podRef(a.targetRef) })),
      ...(s.notReadyAddresses ?? []).map((a) => ({ ip: a.ip, ready: false, terminating: false, pod: podRef(a.targetRef) })),
    ],
    ports: (s.ports ?? []).map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' })),
  }));
}

/** discovery.k8s.io/v1beta1 EndpointSlice: conditions.ready absent means ready; terminating is never ready. */
export function endpointSetOfSlice(obj: KubeObject): EndpointSet {
  const s = obj as unknown as {
    addressType?: string;
    endpoints?: { addresses?: string[]; conditions?: { ready?: boolean; terminating?: boolean }; targetRef?: unknown }[];
    ports?: { name?: string; port?: number; protocol?: ServiceProtocol }[];
  };
  if (s.addressType === 'FQDN') return { addresses: [], ports: [] };
  return {
    addresses: (s.endpoints ?? []).flatMap((e) => {
      const terminating = e.conditions?.terminating === true;
      const ready = e.conditions?.ready !== false && !terminating;
      return (e.addresses ?? []).map((ip) => ({ ip, ready, terminating, pod: podRef(e.targetRef) }));
    }),
    // A slice port without a number means "all ports": nothing the load balancer can use.
    ports: (s.ports ?? []).filter((p) => typeof p.port === 'number').map((p) => ({ name: p.name ?? '', port: p.port!, protocol: p.protocol ?? 'TCP' })),
  };
}

/**
 * The endpoints of a Service as the local cluster derives them: the pods of
 * its namespace that its selector matches; a pod is ready once it exists with
 * an address. A named targetPort resolves per pod to its container port of that
 * name and protocol; a pod without one is no backend of that port.
 */
export function endpointSetsOfPods(service: KubeObject, pods: KubeObject[]): EndpointSet[] {
  const spec = (service.spec ?? {}) as ServiceSpec;
  if (!spec.selector) return [];
  const selector: LabelSelector = { matchLabels: spec.selector };
  const namespace = service.metadata.namespace ?? 'default';
  const sets: EndpointSet[] = [];
  for (const pod of pods) {
    if ((pod.metadata.namespace ?? 'default') !== namespace || !selectorMatches(selector, pod.metadata.labels ?? {})) continue;
    const status = (pod.status ?? {}) as { podIPs?: { ip: string }[]; podIP?: string; phase?: string };
    if (status.phase === 'Succeeded' || status.phase === 'Failed') continue;
    const ips = status.podIPs?.map((p) => p.ip) ?? (status.podIP ? [status.podIP] : []);
    if (ips.length === 0) continue;
    const containerPorts = (((pod.spec ?? {}) as { containers?: { ports?: { name?: string; containerPort: number; protocol?: ServiceProtocol }[] }[] }).containers ?? []).flatMap((c) => c.ports ?? []);
    const ports: EndpointSet['ports'] = [];
    for (const sp of spec.ports ?? []) {
      const protocol = sp.protocol ?? 'TCP';
      const target = sp.targetPort ?? sp.port;
      const port = typeof target === 'number' ? target : /^\d+$/.test(target) ? Number(target) : containerPorts.find((c) => c.name === target && (c.protocol ?? 'TCP') === protocol)?.containerPort;
      if (port !== undefined) ports.push({ name: sp.name ?? '', port, protocol });
    }
    sets.push({ addresses: ips.map((ip) => ({ ip, ready: true, terminating: false, pod: keyOf(pod) })), ports });
  }
  return sets;
}

/** The Service's addresses: clusterIPs (dual stack) or clusterIP; none for a headless or unallocated Service. */
export function serviceAddresses(service: KubeObject): string[] {
  const spec = (service.spec ?? {}) as ServiceSpec;
  const ips = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  return ips.filter((ip) => net.isIP(ip) !== 0);
}

function compareBackends(a: ServiceBackend, b: ServiceBackend): number {
  return a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port;
}

/** What the table is built from. */
export interface ServiceInputs {
  services: KubeObject[];
  endpoints?: KubeObject[];
  endpointSlices?: KubeObject[];
  /** Derive endpoints from these pods for Services that have neither slices nor Endpoints (the local cluster). */
  pods?: KubeObject[];
}

/** What one Service's endpoints come from (the first present wins, as in serviceTable). */
export interface ServiceEndpointInputs {
  /** Its EndpointSlices (labelled kubernetes.io/service-name); present and non-empty: they win. */
  endpointSlices?: KubeObject[];
  endpoints?: KubeObject;
  /** Derive endpoints from these pods when it has neither (the local cluster). */
  pods?: KubeObject[];
}

/** Every frontend of every ClusterIP and NodePort Service, with its backends; sorted by address, port, protocol. */
export function serviceTable(inputs: ServiceInputs): ServiceFrontend[] {
  const slicesByService = new Map<string, KubeObject[]>();
  for (const slice of inputs.endpointSlices ?? []) {
    const owner = sliceOwner(slice);
    if (!owner) continue;
    slicesByService.set(owner, [...(slicesByService.get(owner) ?? []), slice]);
  }
  const endpointsByService = new Map((inputs.endpoints ?? []).map((e) => [keyOf(e), e]));
  const out: ServiceFrontend[] = [];
  for (const service of inputs.services) {
    const key = keyOf(service);
    out.push(...serviceFrontends(service, { endpointSlices: slicesByService.get(key), endpoints: endpointsByService.get(key), pods: inputs.pods }));
  }
  return out.sort(compareFrontends);
}

/** "namespace/name" of the Service an EndpointSlice belongs to, or undefined (no kubernetes.io/service-name label). */
export function sliceOwner(slice: KubeObject): string | undefined {
  const owner = slice.metadata.labels?.[SERVICE_NAME_LABEL];
  return owner ? `${slice.metadata.namespace ?? 'default'}/${owner}` : undefined;
}

/** "namespace/name" of a Service (or of its Endpoints). */
export function serviceKeyOf(o: KubeObject): string {
  return keyOf(o);
}

/**
 * One Service's frontends (unsorted), from its own endpoint inputs: what the
 * incremental sync rebuilds when a datastore event touches that Service. A
 * malformed object (a hand-written file in the local datastore) costs its own
 * frontends, not the others'.
 */
export function serviceFrontends(service: KubeObject, inputs: ServiceEndpointInputs): ServiceFrontend[] {
  try {
    return frontendsOf(service, inputs);
  } catch {
    return [];
  }
}

/** Labels with which a Service asks the cluster's default proxy to leave it alone, as kube-proxy does. */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';

/** False for a Service another proxy serves (any service-proxy-name) or one labelled headless. */
function servedByUs(service: KubeObject): boolean {
  const labels = service.metadata.labels ?? {};
  return !(SERVICE_PROXY_NAME_LABEL in labels) && !(HEADLESS_LABEL in labels);
}

function frontendsOf(service: KubeObject, inputs: ServiceEndpointInputs): ServiceFrontend[] {
  const out: ServiceFrontend[] = [];
  const spec = (service.spec ?? {}) as ServiceSpec;
  if (!servedByUs(service)) return [];
  // A LoadBalancer is also a NodePort and a ClusterIP (kube-proxy serves both; the balancer outside is not ours).
  // ExternalName is a DNS name only. spec.externalIPs and status.loadBalancer.ingress are not served: anyone who may
  // create a Service could claim any address with them and intercept traffic to it (CVE-2020-8554).
  const type: ServiceType | undefined =
    spec.type === undefined || spec.type === 'ClusterIP' ? 'ClusterIP' : spec.type === 'NodePort' || spec.type === 'LoadBalancer' ? spec.type : undefined;
  if (!type) return [];
  const { endpointSlices: slices, endpoints, pods } = inputs;
  const sets = slices?.length ? slices.map(endpointSetOfSlice) : endpoints ? endpointSetsOfEndpoints(endpoints) : pods ? endpointSetsOfPods(service, pods) : [];
  const ports = (spec.ports ?? []).filter((sp) => isPort(sp.port) && ['TCP', 'UDP', 'SCTP'].includes(sp.protocol ?? 'TCP'));
  const affinity = spec.sessionAffinity === 'ClientIP' ? 'ClientIP' : 'None';
  const affinityTimeoutSec = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SEC;
  for (const address of serviceAddresses(service)) {
    const family = net.isIP(address);
    for (const sp of ports) {
      const portName = sp.name ?? '';
      const protocol = sp.protocol ?? 'TCP';
      const seen = new Set<string>();
      const backends: ServiceBackend[] = [];
      for (const set of sets) {
        // Endpoints name their ports as the Service does ('' for the one unnamed port).
        const ep = set.ports.find((p) => p.name === portName && p.protocol === protocol);
        if (!ep || !isPort(ep.port)) continue;
        for (const a of set.addresses) {
          if (net.isIP(a.ip) !== family || seen.has(`${a.ip}|${ep.port}`)) continue;
          seen.add(`${a.ip}|${ep.port}`);
          backends.push({ address: a.ip, port: ep.port, ready: a.ready, terminating: a.terminating, ...(a.pod ? { pod: a.pod } : {}) });
        }
      }
      out.push({
        namespace: service.metadata.namespace ?? 'default',
        name: service.metadata.name,
        portName,
        type,
        address,
        port: sp.port,
        protocol,
        ...(type !== 'ClusterIP' && sp.nodePort ? { nodePort: sp.nodePort } : {}),
        sessionAffinity: affinity,
        affinityTimeoutSec,
        backends: backends.sort(compareBackends),
      });
    }
  }
  return out;
}

/**
 * The table with each NodePort frontend also on every node address (the
 * node's own, as the socket hooks see a connect to it from a pod or the
 * host): kube-proxy's NodePort for traffic that starts on this node.
 */
export function withNodePorts(table: ServiceFrontend[], nodeAddresses: string[]): ServiceFrontend[] {
  const seen = new Set(table.map(frontendKeyOf));
  return [...table, ...nodePortCopies(table, nodeAddresses, seen)].sort(compareFrontends);
}

/** "address|port|protocol": what the load balancer's maps key a frontend by. */
export function frontendKeyOf(f: { address: string; port: number; protocol: string }): string {
  return `${f.address}|${f.port}|${f.protocol}`;
}

/** Each NodePort frontend of these on every node address of its family, skipping (and adding to) seen. */
export function nodePortCopies(frontends: ServiceFrontend[], nodeAddresses: string[], seen: Set<string> = new Set()): ServiceFrontend[] {
  const out: ServiceFrontend[] = [];
  for (const f of frontends) {
    if (f.type === 'ClusterIP' || !f.nodePort) continue;
    const family = net.isIP(f.address);
    for (const address of nodeAddresses) {
      const key = frontendKeyOf({ address, port: f.nodePort, protocol: f.protocol });
      if (net.isIP(address) !== family || seen.has(key)) continue;
      seen.add(key);
      out.push({ ...f, address, port: f.nodePort });
    }
  }
  return out;
}

function isPort(p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535;
}

export function compareFrontends(a: ServiceFrontend, b: ServiceFrontend): number {
  return a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port || (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0);
}

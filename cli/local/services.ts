/**
 * Services in the local cluster: what the API server checks of a v1 Service,
 * and what it allocates (a ClusterIP from the cluster's Service CIDR, a
 * NodePort from 30000-32767). The local cluster has no API server, so
 * `sluice local apply` does both here before it stores the object.
 */
import net from 'node:net';
import type { KubeObject } from '../../agent/datastore/local.ts';
import { bigIntToIp, cidrContains, parseCidr } from '../../lib/cidr.ts';
import type { ClusterConfig } from './cluster.ts';

/** The agent's default --service-cidr (agent/flags.ts), used when `local up` passed none. */
export const DEFAULT_LOCAL_SERVICE_CIDR = '10.96.0.0/12';
/** Kubernetes' default --service-node-port-range. */
export const NODE_PORT_MIN = 30000;
export const NODE_PORT_MAX = 32767;

const PORT_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

interface PortSpec {
  name?: string;
  port?: unknown;
  targetPort?: unknown;
  protocol?: unknown;
  nodePort?: unknown;
}

interface ServiceSpec {
  type?: string;
  selector?: Record<string, string>;
  clusterIP?: string;
  clusterIPs?: string[];
  ports?: PortSpec[];
  sessionAffinity?: string;
  sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
  [k: string]: unknown;
}

/** The Service CIDRs the cluster's agents were given (`--agent-arg=--service-cidr=...`), or the default. */
export function serviceCidrsOf(config: ClusterConfig): string[] {
  const args = config.agentArgs ?? [];
  const out: string[] = [];
  args.forEach((arg, i) => {
    if (arg.startsWith('--service-cidr=')) out.push(arg.slice('--service-cidr='.length));
    else if (arg === '--service-cidr' && args[i + 1]) out.push(args[i + 1]!);
  });
  return out.length > 0 ? out : [DEFAULT_LOCAL_SERVICE_CIDR];
}

function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

/** Throws what the API server would say of a bad Service spec. */
export function checkServiceSpec(name: string, spec: unknown): void {
  const s = (spec ?? {}) as ServiceSpec;
  const where = `Service ${name}`;
  const type = s.type ?? 'ClusterIP';
  if (type !== 'ClusterIP' && type !== 'NodePort') throw new Error(`${where}: spec.type '${type}' is not supported by the local cluster (ClusterIP or NodePort)`);
  if (s.selector !== undefined && (typeof s.selector !== 'object' || Object.values(s.selector).some((v) => typeof v !== 'string'))) {
    throw new Error(`${where}: spec.selector must map label keys to string values`);
  }
  const ports = s.ports ?? [];
  if (!Array.isArray(ports) || ports.length === 0) throw new Error(`${where}: spec.ports must list at least one port`);
  const seen = new Set<string>();
  for (const p of ports) {
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') throw new Error(`${where}: port protocol '${String(protocol)}' must be TCP, UDP or SCTP`);
    if (!isPort(p.port)) throw new Error(`${where}: port ${String(p.port)} must be a number from 1 to 65535`);
    const target = p.targetPort ?? p.port;
    if (!isPort(target) && !(typeof target === 'string' && PORT_NAME_RE.test(target) && target.length <= 15)) {
      throw new Error(`${where}: targetPort ${JSON.stringify(target)} must be a port number or a container port name`);
    }
    if (p.nodePort !== undefined && (type !== 'NodePort' || !isPort(p.nodePort) || p.nodePort < NODE_PORT_MIN || p.nodePort > NODE_PORT_MAX)) {
      throw new Error(`${where}: nodePort ${String(p.nodePort)} needs type NodePort and a port in ${NODE_PORT_MIN}-${NODE_PORT_MAX}`);
    }
    if (ports.length > 1 && !p.name) throw new Error(`${where}: every port needs a name when there are several`);
    const key = `${String(p.port)}/${String(protocol)}`;
    if (seen.has(key) || (p.name && seen.has(`name:${p.name}`))) throw new Error(`${where}: duplicate port ${p.name ?? key}`);
    seen.add(key);
    if (p.name) seen.add(`name:${p.name}`);
  }
  if (s.sessionAffinity !== undefined && s.sessionAffinity !== 'None' && s.sessionAffinity !== 'ClientIP') {
    throw new Error(`${where}: sessionAffinity '${s.sessionAffinity}' must be None or ClientIP`);
  }
  const timeout = s.sessionAffinityConfig?.clientIP?.timeoutSeconds;
  if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 1 || timeout > 86_400)) {
    throw new Error(`${where}: sessionAffinityConfig.clientIP.timeoutSeconds must be 1 to 86400`);
  }
  if (s.clusterIP !== undefined && s.clusterIP !== 'None' && s.clusterIP !== '' && net.isIP(s.clusterIP) === 0) {
    throw new Error(`${where}: clusterIP '${s.clusterIP}' is not an IP address`);
  }
}

/**
 * The ClusterIPs and NodePorts that Services hold, for allocateService. An
 * apply keeps one for all the Services it stores (adding what each one
 * takes: `hold`), so that storing N Services reads the stored ones once.
 */
export interface ServiceTaken {
  clusterIPs: Set<string>;
  nodePorts: Set<number>;
  /** Per Service CIDR: where the next search for a free address starts (every one below was taken). */
  searchFrom: Map<string, bigint>;
}

export function takenBy(services: KubeObject[]): ServiceTaken {
  const taken: ServiceTaken = { clusterIPs: new Set(), nodePorts: new Set(), searchFrom: new Map() };
  for (const s of services) holdService(taken, s, true);
  return taken;
}

/** Adds (or, with hold false, removes) what a stored Service takes. */
export function holdService(taken: ServiceTaken, service: KubeObject, hold: boolean): void {
  const spec = (service.spec ?? {}) as ServiceSpec;
  for (const ip of spec.clusterIPs ?? [spec.clusterIP ?? '']) {
    if (!ip || ip === 'None') continue;
    if (hold) taken.clusterIPs.add(ip);
    else {
      taken.clusterIPs.delete(ip);
      // A freed address may be below where searches start.
      taken.searchFrom.clear();
    }
  }
  for (const p of spec.ports ?? []) if (typeof p.nodePort === 'number') (hold ? taken.nodePorts.add(p.nodePort) : taken.nodePorts.delete(p.nodePort));
}

/**
 * The Service as stored: the manifest's spec with defaults filled in (type,
 * protocol, targetPort, sessionAffinity), its ClusterIP (kept from the manifest,
 * or from the Service it replaces, else the lowest free address of the first
 * Service CIDR) and NodePorts. Throws when the ClusterIP is outside the
 * Service CIDRs or taken by another Service, or the CIDR is full.
 */
export function allocateService(obj: KubeObject, existing: KubeObject | null, others: KubeObject[] | ServiceTaken, serviceCidrs: string[]): KubeObject {
  const spec = { ...((obj.spec ?? {}) as ServiceSpec) };
  const before = (existing?.spec ?? {}) as ServiceSpec;
  const name = `${obj.metadata.namespace}/${obj.metadata.name}`;
  const type = spec.type ?? 'ClusterIP';
  const cidrs = serviceCidrs.map(parseCidr);
  const held = Array.isArray(others) ? takenBy(others) : others;
  const taken = held.clusterIPs;
  let clusterIP = spec.clusterIP;
  if (clusterIP !== 'None') {
    if (!clusterIP) clusterIP = before.clusterIP && before.clusterIP !== 'None' ? before.clusterIP : undefined;
    else if (before.clusterIP && before.clusterIP !== clusterIP) throw new Error(`Service ${name}: spec.clusterIP cannot be changed (${before.clusterIP}); delete the Service first`);
    if (clusterIP) {
      if (!cidrs.some((c) => cidrContains(c, clusterIP!))) throw new Error(`Service ${name}: clusterIP ${clusterIP} is not in the service CIDR ${serviceCidrs.join(', ')}`);
      if (taken.has(clusterIP)) throw new Error(`Service ${name}: clusterIP ${clusterIP} is already allocated to another Service`);
    } else {
      const cidr = cidrs[0]!;
      // Skip the network address (and, for IPv4, the broadcast address). The lowest free one, searched
      // from where the last search of this apply stopped: no address below it was free then.
      const first = cidr.base + 1n;
      const last = cidr.base + cidr.size - (cidr.family === 4 ? 2n : 1n);
      const hint = held.searchFrom.get(cidr.text) ?? first;
      for (let v = hint >= first && hint <= last ? hint : first; v <= last && !clusterIP; v++) {
        const ip = bigIntToIp(v, cidr.family);
        if (!taken.has(ip)) {
          clusterIP = ip;
          held.searchFrom.set(cidr.text, v + 1n);
        }
      }
      if (!clusterIP) throw new Error(`Service ${name}: the service CIDR ${cidr.text} is full`);
    }
  }
  const takenNodePorts = new Set(held.nodePorts);
  const ports = (spec.ports ?? []).map((p) => {
    const out: PortSpec = { ...p, protocol: p.protocol ?? 'TCP', targetPort: p.targetPort ?? p.port };
    if (type !== 'NodePort') return out;
    const previous = (before.ports ?? []).find((q) => q.port === p.port && (q.protocol ?? 'TCP') === out.protocol)?.nodePort;
    let nodePort = (p.nodePort ?? previous) as number | undefined;
    if (nodePort !== undefined && takenNodePorts.has(nodePort)) throw new Error(`Service ${name}: nodePort ${nodePort} is already allocated`);
    for (let n = NODE_PORT_MIN; nodePort === undefined && n <= NODE_PORT_MAX; n++) if (!takenNodePorts.has(n)) nodePort = n;
    if (nodePort === undefined) throw new Error(`Service ${name}: no free nodePort in ${NODE_PORT_MIN}-${NODE_PORT_MAX}`);
    takenNodePorts.add(nodePort);
    return { ...out, nodePort };
  });
  const stored: ServiceSpec = {
    ...spec,
    type,
    ports: ports as PortSpec[],
    sessionAffinity: spec.sessionAffinity ?? 'None',
    clusterIP: clusterIP ?? 'None',
    clusterIPs: [clusterIP ?? 'None'],
  };
  return { apiVersion: 'v1', kind: 'Service', metadata: { ...(existing?.metadata ?? {}), ...obj.metadata }, spec: stored as Record<string, unknown> };
}

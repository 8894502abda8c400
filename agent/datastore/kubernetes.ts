/**
 * The Kubernetes datastore: Pods, Namespaces, Nodes, NetworkPolicies,
 * Services, Endpoints and EndpointSlices (discovery.k8s.io/v1beta1) kept
 * in memory by list+watch reflectors, served through the agent's Datastore
 * interface as plain Kubernetes objects (only the fields the agent reads).
 * A watch event calls the change listeners at once, so a new policy reaches
 * the maps in milliseconds rather than at the next poll.
 */
import { ChangeFeeds, SortedList, lazyClusterObjects, type ChangeFeed, type FeedKind } from './change-feed.ts';
import type { ClusterObjects } from './cluster-view.ts';
import type { Datastore } from './datastore.ts';
import type { KubeObject } from './local.ts';
import { ApiStatusError, KubeClient, loadKubeConfig } from './kubernetes-client.ts';
import { Reflector, type ReflectorStats } from './kubernetes-reflector.ts';
import { errorMessage } from '../../lib/errors.ts';
import { ServiceChangeIndex } from '../services/service-changes.ts';

/** A direct GET of a pod the watch has not delivered yet gives up after this long. */
const FETCH_POD_TIMEOUT_MS = 5_000;

/** Tunables, mostly for tests. */
export interface KubernetesDatastoreOptions {
  log?: (msg: string) => void;
  watchTimeoutMinSec?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

type Meta = KubeObject['metadata'] & { resourceVersion?: string; deletionTimestamp?: string };

function meta(obj: KubeObject, withVersion = true): Meta {
  const m = obj.metadata as Meta;
  const out: Meta = { name: m.name };
  if (m.namespace) out.namespace = m.namespace;
  if (m.uid) out.uid = m.uid;
  if (m.labels) out.labels = m.labels;
  if (m.resourceVersion && withVersion) out.resourceVersion = m.resourceVersion;
  if (m.deletionTimestamp) out.deletionTimestamp = m.deletionTimestamp;
  return out;
}

function pick(from: Record<string, unknown> | undefined, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (from?.[k] !== undefined) out[k] = from[k];
  return out;
}

/**
 * The fields of a Pod the agent reads: labels, node, host networking,
 * container ports, phase and addresses. Kept for every pod of the cluster,
 * so nothing more (not its resourceVersion: nothing reads a pod's).
 */
export function projectPod(obj: KubeObject): KubeObject {
  const spec = (obj.spec ?? {}) as { containers?: { name?: string; ports?: unknown[] }[] };
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    metadata: meta(obj, false),
    spec: {
      ...pick(obj.spec, ['nodeName', 'hostNetwork']),
      containers: (spec.containers ?? []).map((c) => ({ name: c.name, ...(c.ports ? { ports: c.ports } : {}) })),
    },
    // podIP is podIPs[0] whenever podIPs is set, and every reader takes podIPs first.
    status: pick(obj.status, (obj.status as { podIPs?: unknown } | undefined)?.podIPs ? ['phase', 'podIPs'] : ['phase', 'podIP']),
  };
}

function projectNamespace(obj: KubeObject): KubeObject {
  return { apiVersion: obj.apiVersion, kind: obj.kind, metadata: meta(obj) };
}

function projectNode(obj: KubeObject): KubeObject {
  return { apiVersion: obj.apiVersion, kind: obj.kind, metadata: meta(obj), spec: pick(obj.spec, ['podCIDR', 'podCIDRs']), status: pick(obj.status, ['addresses']) };
}

/** The fields of a Service the load balancer reads. */
function projectService(obj: KubeObject): KubeObject {
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    metadata: meta(obj),
    spec: pick(obj.spec, ['type', 'selector', 'clusterIP', 'clusterIPs', 'ports', 'sessionAffinity', 'sessionAffinityConfig', 'externalTrafficPolicy', 'ipFamilies']),
  };
}

/** Endpoints and EndpointSlices keep their data at the top level, not under spec. */
function projectTopLevel(keys: string[]): (obj: KubeObject) => KubeObject {
  return (obj) => ({ apiVersion: obj.apiVersion, kind: obj.kind, metadata: meta(obj), ...pick(obj as unknown as Record<string, unknown>, keys) });
}

function projectPolicy(obj: KubeObject): KubeObject {
  return { apiVersion: obj.apiVersion, kind: obj.kind, metadata: meta(obj), spec: obj.spec ?? {} };
}

/**
 * Pods whose addresses identify them: not host-networked (those share the
 * node's address, which must stay the host's) and not finished (a finished
 * pod's address may already belong to a new pod).
 */
export function podHoldsItsAddress(pod: KubeObject): boolean {
  const spec = (pod.spec ?? {}) as { hostNetwork?: boolean };
  const phase = (pod.status ?? {}) as { phase?: string };
  return spec.hostNetwork !== true && phase.phase !== 'Succeeded' && phase.phase !== 'Failed';
}

function sortKey(o: KubeObject): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

function* keyed(items: Map<string, KubeObject>, keep: (obj: KubeObject) => boolean = () => true): Iterable<[string, KubeObject | null]> {
  for (const obj of items.values()) yield [sortKey(obj), keep(obj) ? obj : null];
}

function sorted(items: Map<string, KubeObject>): KubeObject[] {
  return new SortedList(() => keyed(items)).get();
}

/** The cluster's objects from its API server, kept current by watches. */
export class KubernetesDatastore implements Datastore {
  readonly client: KubeClient;
  private readonly pods: Reflector;
  private readonly namespaces: Reflector;
  private readonly nodes: Reflector;
  private readonly policies: Reflector;
  // Services, Endpoints and EndpointSlices do not gate ready(): policy does not
  // need them, and an API server without discovery.k8s.io/v1beta1 must not stop
  // the agent. Their changes have listeners of their own (onServicesChange), so
  // Endpoints churn never recompiles policy.
  private readonly services: Reflector;
  private readonly endpoints: Reflector;
  private readonly endpointSlices: Reflector;
  private readonly listeners: (() => void)[] = [];
  private readonly serviceListeners: (() => void)[] = [];
  /** Which Services each change touched, for the incremental service sync. */
  readonly serviceChanges: ServiceChangeIndex;
  private serviceNotifyScheduled = false;
  private readonly log: (msg: string) => void;
  private dirty = true;
  private notifyScheduled = false;
  /** Each change of a pod, namespace or policy as it is applied, for the incremental policy compiler. */
  private readonly feeds = new ChangeFeeds();
  /**
   * The collections as sorted lists, each built only when read after its
   * collection changed: a watch event costs no sort of the cluster, and a
   * pod event none of the other lists.
   */
  private readonly lists: Record<'pods' | 'namespaces' | 'networkPolicies' | 'nodes', SortedList>;
  // A CNI ADD can come before the watch delivers its pod: such an endpoint is isolated until it does (ClusterView.isolateUnknownPods).
  private readonly current: ClusterObjects;

  constructor(client: KubeClient, opts: KubernetesDatastoreOptions = {}) {
    this.client = client;
    this.log = opts.log ?? (() => {});
    this.lists = {
      pods: new SortedList(() => keyed(this.pods.items, podHoldsItsAddress)),
      namespaces: new SortedList(() => keyed(this.namespaces.items)),
      networkPolicies: new SortedList(() => keyed(this.policies.items)),
      nodes: new SortedList(() => keyed(this.nodes.items)),
    };
    this.current = lazyClusterObjects(this.lists, { isolateUnknownPods: true });
    /** A pod that does not hold its address is, to policy, gone (see podHoldsItsAddress). */
    const fed = (kind: FeedKind) => (key: string, _before: KubeObject | undefined, after: KubeObject | undefined) => {
      this.lists[kind].invalidate();
      this.feeds.record(kind, key, after && (kind !== 'pods' || podHoldsItsAddress(after)) ? after : undefined);
    };
    const common = {
      onChange: () => this.changed(),
      log: this.log,
      watchTimeoutMinSec: opts.watchTimeoutMinSec,
      initialBackoffMs: opts.initialBackoffMs,
      maxBackoffMs: opts.maxBackoffMs,
    };
    this.pods = new Reflector(client, { ...common, onItemChange: fed('pods'), path: '/api/v1/pods', kind: 'Pod', apiVersion: 'v1', project: projectPod });
    this.namespaces = new Reflector(client, { ...common, onItemChange: fed('namespaces'), path: '/api/v1/namespaces', kind: 'Namespace', apiVersion: 'v1', project: projectNamespace });
    this.nodes = new Reflector(client, { ...common, onItemChange: () => this.lists.nodes.invalidate(), path: '/api/v1/nodes', kind: 'Node', apiVersion: 'v1', project: projectNode });
    this.policies = new Reflector(client, {
      ...common,
      onItemChange: fed('networkPolicies'),
      path: '/apis/networking.k8s.io/v1/networkpolicies',
      kind: 'NetworkPolicy',
      apiVersion: 'networking.k8s.io/v1',
      project: projectPolicy,
    });
    const serviceCommon = { ...common, onChange: () => this.servicesChanged() };
    const serviceChanged = (key: string) => this.serviceChanges.serviceChanged(key);
    this.services = new Reflector(client, { ...serviceCommon, onItemChange: serviceChanged, path: '/api/v1/services', kind: 'Service', apiVersion: 'v1', project: projectService });
    this.endpoints = new Reflector(client, { ...serviceCommon, onItemChange: serviceChanged, path: '/api/v1/endpoints', kind: 'Endpoints', apiVersion: 'v1', project: projectTopLevel(['subsets']) });
    this.endpointSlices = new Reflector(client, {
      ...serviceCommon,
      onItemChange: (key, before, after) => this.serviceChanges.sliceChanged(key, before, after),
      path: '/apis/discovery.k8s.io/v1beta1/endpointslices',
      kind: 'EndpointSlice',
      apiVersion: 'discovery.k8s.io/v1beta1',
      project: projectTopLevel(['addressType', 'endpoints', 'ports']),
    });
    this.serviceChanges = new ServiceChangeIndex({ services: this.services.items, endpoints: this.endpoints.items, endpointSlices: this.endpointSlices.items });
  }

  /** A datastore for the cluster of a kubeconfig file, or the in-cluster service account when none is given. */
  static fromKubeconfig(kubeconfig: string | undefined, opts: KubernetesDatastoreOptions = {}): KubernetesDatastore {
    return new KubernetesDatastore(new KubeClient(loadKubeConfig(kubeconfig)), opts);
  }

  private reflectors(): Reflector[] {
    return [this.namespaces, this.nodes, this.pods, this.policies];
  }

  private serviceReflectors(): Reflector[] {
    return [this.services, this.endpoints, this.endpointSlices];
  }

  /** Starts listing and watching. */
  start(): void {
    for (const r of [...this.reflectors(), ...this.serviceReflectors()]) r.start();
  }

  /** Stops every watch. */
  stop(): void {
    for (const r of [...this.reflectors(), ...this.serviceReflectors()]) r.stop();
  }

  /** True once Services, Endpoints and EndpointSlices have been listed: before, a Service may look endpoint-less. */
  servicesReady(): boolean {
    return this.serviceReflectors().every((r) => r.synced);
  }

  /** True once every collection has been listed. */
  ready(): boolean {
    return this.reflectors().every((r) => r.synced);
  }

  /** Resolves once every collection has been listed. */
  async whenReady(): Promise<void> {
    await Promise.all(this.reflectors().map((r) => r.whenSynced()));
  }

  /** Calls the listener (coalesced, on a later tick) whenever the objects change. */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    this.dirty = true;
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    setImmediate(() => {
      this.notifyScheduled = false;
      for (const l of this.listeners) l();
    });
  }

  /** Calls the listener (coalesced, on a later tick) whenever a Service, Endpoints or EndpointSlice changes. */
  onServicesChange(listener: () => void): void {
    this.serviceListeners.push(listener);
  }

  private servicesChanged(): void {
    if (this.serviceNotifyScheduled) return;
    this.serviceNotifyScheduled = true;
    setImmediate(() => {
      this.serviceNotifyScheduled = false;
      for (const l of this.serviceListeners) l();
    });
  }

  /** Services, Endpoints and EndpointSlices as last seen (sorted by namespace and name). */
  serviceObjects(): { services: KubeObject[]; endpoints: KubeObject[]; endpointSlices: KubeObject[] } {
    return {
      services: sorted(this.services.items),
      endpoints: sorted(this.endpoints.items),
      endpointSlices: sorted(this.endpointSlices.items),
    };
  }

  refresh(): boolean {
    if (!this.dirty) return false;
    this.dirty = false;
    return true;
  }

  /** The objects as the watches have them now (each list sorted when first read after its collection changed). */
  objects(): ClusterObjects {
    return this.current;
  }

  changes(): ChangeFeed {
    return this.feeds.subscribe();
  }

  describe(): string {
    return `kubernetes:${this.client.server()}${this.ready() ? '' : ' (syncing)'}`;
  }

  /** The Node of that name as last seen. */
  node(name: string): KubeObject | undefined {
    return this.nodes.items.get(name);
  }

  /** The Namespace of that name as last seen. */
  namespace(name: string): KubeObject | undefined {
    return this.namespaces.items.get(name);
  }

  /** Whether the pod exists (as last seen, finished pods included). */
  podExists(namespace: string, name: string): boolean {
    return this.pods.items.has(`${namespace}/${name}`);
  }

  /**
   * Makes sure the pod is known before its endpoint is synced: a CNI ADD can
   * come before the watch delivers the pod, and its labels must not be guessed.
   * GETs it when missing; a pod that does not exist (or an API failure) leaves
   * the cache as it is.
   */
  async ensurePod(namespace: string, name: string): Promise<void> {
    if (!namespace || !name || this.podExists(namespace, name)) return;
    try {
      const pod = await this.client.getJson<KubeObject>(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`, {}, FETCH_POD_TIMEOUT_MS);
      if (this.pods.addIfAbsent(pod)) this.log(`pod ${namespace}/${name} fetched directly: the watch had not delivered it yet`);
    } catch (err: unknown) {
      if (err instanceof ApiStatusError && err.statusCode === 404) return;
      this.log(`fetch pod ${namespace}/${name}: ${errorMessage(err)}`);
    }
  }

  /** List and watch counters per collection. */
  stats(): Record<string, ReflectorStats> {
    return {
      pods: this.pods.stats,
      namespaces: this.namespaces.stats,
      nodes: this.nodes.stats,
      networkPolicies: this.policies.stats,
      services: this.services.stats,
      endpoints: this.endpoints.stats,
      endpointSlices: this.endpointSlices.stats,
    };
  }
}

/**
 * sluice-agent: the node daemon. Loads (or adopts) the pinned datapath, owns
 * IPAM and the endpoint maps, and serves the API on a root-only socket.
 *
 * Every part is made here, in the order the node needs them, with what it
 * needs passed to its constructor; each is stopped in the reverse order.
 */
import fs from 'node:fs';
import { ensureBpffs } from '../datapath/bpffs.ts';
import { bpfObjectBytes, traceObjectBytes } from '../datapath/bpf-object.ts';
import { loadDatapath, type Datapath } from '../datapath/loader.ts';
import { cgroup2Root, cgroup2RootUnder, loadTrace, type Trace } from '../datapath/trace-loader.ts';
import { syncNetfilterLinks } from '../datapath/netfilter.ts';
import { encodeDatapathConfig, encodeU32 } from '../datapath/abi.ts';
import { DEL_QUEUE_SUBDIR } from '../contract/del-queue.ts';
import { Ipam } from '../ipam/allocator.ts';
import { prepareIpamStore, restoreIpamAllocations } from './ipam-recovery.ts';
import { errorMessage } from '../lib/errors.ts';
import { serveApi, type Route } from './api/server.ts';
import { endpointRoutes } from './api/endpoint-routes.ts';
import { ipamRoutes } from './api/ipam-routes.ts';
import { makeResolver, monitorRoutes } from './api/monitor-routes.ts';
import { policyRoutes } from './api/policy-routes.ts';
import { explainRoute } from './api/explain-route.ts';
import { tcpHealthRoute } from './api/tcp-health-route.ts';
import { AGENT_VERSION, countersRoute, statusRoute } from './api/status-route.ts';
import { LocalDirDatastore, NoDatastore, type Datastore } from './datastore/datastore.ts';
import { clusterNodes } from './datastore/cluster-view.ts';
import type { KubernetesMode } from './datastore/kubernetes-agent.ts';
import { ENDPOINTS_SCHEMA_VERSION, EndpointManager } from './endpoints.ts';
import { AGENT_DEFAULTS, AGENT_USAGE, parseAgentFlags, type AgentFlags } from './flags.ts';
import { log } from './log.ts';
import { AgentMetrics } from './metrics/metrics.ts';
import { MapFillReader } from './metrics/map-fill.ts';
import { registerTcpHealthMetrics } from './metrics/tcp-health.ts';
import { formatMetricsAddress, serveMetrics } from './metrics/server.ts';
import { Counter as PromCounter, type Registry } from 'prom-client';
import { Monitor } from './monitor.ts';
import { SecurityRuntime } from './security/runtime.ts';
import { startServices } from './services/start.ts';
import { linkServiceNat } from '../datapath/service-nat.ts';
import { serviceRoutes } from './api/service-routes.ts';
import { serviceLbObjectBytes } from '../datapath/service-lb-loader.ts';
import { SecuritySensor } from './security/sensor.ts';
import { securityRoutes } from './api/security-routes.ts';
import { loadSecurity, securityObjectBytes } from '../datapath/security-loader.ts';
import { probeSecurityModes } from '../datapath/security-probe.ts';
import { FlowRecorder } from './flows/recorder.ts';
import { FlowStore } from './flows/store.ts';
import { alertRecordOf } from './flows/alert-record.ts';
import { PolicyNamer } from './flows/policy-names.ts';
import { FlowMetrics } from './metrics/flows.ts';
import { flowRoutes } from './api/flow-routes.ts';
import { clusterView, nodeAddresses } from './datastore/cluster-view.ts';
import { NUMBERING_SCHEMA_VERSION, NumberingStore } from './policy-sync/numbering-store.ts';
import { PolicyState } from './policy-sync/state.ts';
import { ConntrackSweeper } from './reclaim/conntrack-sweep.ts';
import { startDelQueueDrain } from './reclaim/del-queue-drain.ts';
import { reportStaleAllocations, runningOn, startIpamReconciler } from './reclaim/ipam-reconcile.ts';
import { NodeRouting } from './routing/routing.ts';
import { StateDisk } from './state-disk.ts';
import { prepareStore, type StoreCheck, type StoreRecovery } from './store-check.ts';
import { readKernelNumbers } from './kernel-numbers.ts';
import { MISSING, restoreEndpoints } from './endpoints-recovery.ts';
import { restoreNumbering } from './numbering-recovery.ts';
import { registerStoreRecoveryMetrics } from './metrics/store-recovery.ts';
import { TcpHealth } from './tcp-health.ts';


/** How often the state directory is probed while it refuses writes (and to notice that it does). */
const STATE_DISK_PROBE_MS = 1000;

/** Runs the agent until SIGTERM or SIGINT. */
export async function runAgent(argv: string[]): Promise<void> {
  const flags = parseAgentFlags(argv);
  if (flags === null) {
    console.log(AGENT_USAGE);
    return;
  }
  const stop = await startAgent(flags);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log(`${signal}: stopping (pinned programs and maps stay in place)`);
  await stop();
}

/** What was started, stopped last-first. */
class Stoppers {
  private readonly stops: (() => unknown)[] = [];

  /** Registers how to stop part; returns part. */
  add<T>(part: T, stop: (part: T) => unknown): T {
    this.stops.push(() => stop(part));
    return part;
  }

  async stopAll(): Promise<void> {
    for (const stop of this.stops.reverse()) await stop();
  }
}

/** Starts every part of the agent and serves its API; returns how to stop it all. */
async function startAgent(f: AgentFlags): Promise<() => Promise<void>> {
  const started = new Stoppers();
  const startedAtMs = Date.now() - Math.round(process.uptime() * 1000);
  // Kubernetes mode: nothing is synced or served before the initial lists and this node's pod CIDRs are in.
  const kube = f.datastore === 'kubernetes' ? await startKubernetes(f) : null;
  const podCIDRs = kube?.podCIDRs ?? f.podCIDRs ?? [AGENT_DEFAULTS.podCIDR];
  fs.mkdirSync(f.stateDir, { recursive: true, mode: 0o700 });

  const datapath = started.add(startDatapath(f), (d) => d.close());
  const tcpHealth = startTcpHealth(f, started);
  const stateDisk = started.add(new StateDisk(f.stateDir, log), (d) => d.stop());
  // A damaged store is moved aside here, before it is opened; what it held is rebuilt below from the node.
  const ipamStore = prepareIpamStore(`${f.stateDir}/ipam.db`, log);
  const stores = prepareStateStores(f.stateDir);
  const ipam = started.add(new Ipam(ipamStore.file, podCIDRs, { reserved: f.ipamReserved }), (i) => i.close());
  const numbering = started.add(new NumberingStore(stores.numbering.file, stateDisk, { reservationFile: `${f.stateDir}/numbering.reserved` }), (n) => n.close());
  const datastore: Datastore = kube?.datastore ?? (f.datastoreDir ? new LocalDirDatastore(f.datastoreDir) : new NoDatastore());
  const policy = new PolicyState(datastore, datapath.maps, numbering, f.serviceCIDRs);
  // Runtime security follows the endpoints too; it starts once pods can be named (below).
  let security: SecurityRuntime | null = null;
  const endpoints = started.add(
    new EndpointManager(stores.endpoints.file, (eps) => {
        tcpHealth.track(eps);
        security?.track(eps);
        return policy.apply(eps);
      }, { disk: stateDisk, identityOf: (id) => policy.identityOf(id) }),
    (e) => e.close(),
  );
  // Before the first sync rewrites the maps from the records and the numbering, and before any ADD.
  const recoveries = await rebuildStateStores({ stateDir: f.stateDir, stores, ipamStore, datapath, ipam, endpoints, numbering, datastore, socket: f.socket });
  await restoreIpamAllocations({ ipam, check: ipamStore, endpoints: endpoints.list(), endpointMap: datapath.maps.endpoints, datastore, nodeName: f.nodeName, socket: f.socket, log });
  // A newer agent's store stays as it wrote it: a pod added meanwhile would be missing from it when that agent is back.
  const newer = [stores.endpoints, stores.numbering].filter((c) => c.newer).map((c) => c.refusal!);
  if (newer.length > 0) ipam.refuse([ipam.refusal, ...newer].filter((r) => r !== null).join('; '));
  stateDisk.addStore('ipam', () => ipam.reopen());
  stateDisk.addStore('endpoints', () => endpoints.reopen());
  stateDisk.addStore('numbering', () => numbering.reopen());
  const naming = makeResolver(endpoints, policy, datastore);
  const monitor = new Monitor(naming);
  const mapFill = new MapFillReader(datapath.maps);
  const metrics = new AgentMetrics(
    {
      node: f.nodeName,
      version: AGENT_VERSION,
      startedAtMs,
      readCounters: () => datapath.readCounters(),
      epCounters: datapath.maps.ep_counters,
      mapFill: () => mapFill.read(),
      endpoints: () => endpoints.list(),
      identities: () => policy.sync.state()?.identities.size ?? 0,
      policies: () => datastore.objects().networkPolicies.length,
      policyRevision: () => policy.revision,
      policyErrors: () => policy.policyErrors,
      endpointsAwaitingLabels: () => policy.awaitingLabels.length,
      onPolicySync: (listener) => policy.onSync(listener),
      ipam,
      monitorReceived: () => monitor.received,
    },
    f.metricsAddress !== null,
  );
  registerTcpHealthMetrics(metrics.registry, () => tcpHealth.report());
  registerStoreRecoveryMetrics(metrics.registry, recoveries);
  const flowStore = new FlowStore(f.flowRecords);
  const flowRecorder = new FlowRecorder({
    naming,
    policies: new PolicyNamer(
      {
        revision: () => policy.revision,
        view: () => clusterView(datastore.objects()),
        explainOptions: () => ({
          local: endpoints.list().map((e) => ({ endpointId: e.id, namespace: e.namespace, pod: e.pod, ips: e.ips })),
          addresses: { host: policy.hostAddresses(), nodes: nodeAddresses(datastore.objects()), serviceCidrs: f.serviceCIDRs },
        }),
      },
      log,
    ),
    store: flowStore,
    bootOffsetMs: monitor.bootOffset,
    datapathLosses: () => datapath.readCounters().EVENTS_LOST.packets,
    // Counted only where scraped: each record costs the metrics a few µs.
    ...(f.metricsAddress !== null ? { metrics: new FlowMetrics(metrics.registry, f.metricsLabels) } : {}),
    log,
  });
  monitor.onEvent((e) => flowRecorder.record(e));
  const securityModes = f.security ? probeSecurityModes() : [];
  let securityOff = 'off (--security on or --security-rules to turn it on)';
  if (f.security) {
    try {
      security = startSecurity(f, started, (ns, pod) => naming.labelsOf(ns, pod) ?? {}, metrics.registry);
      security.track(endpoints.list());
      security.onAlert((a) => flowStore.add(alertRecordOf(a)));
    } catch (err: unknown) {
      securityOff = `the security programs could not be loaded: ${errorMessage(err)}`;
      log(`security: ${securityOff}`);
    }
  }

  await policy.init(() => endpoints.list());
  const restored = endpoints.resync();
  log(`endpoints restored: ${restored}; datastore ${datastore.describe()}; ${policy.lastSync?.written ?? 0} map entries written, ${policy.lastSync?.deleted ?? 0} deleted`);
  // Stopped before the endpoint store closes: its watch reads the endpoints.
  started.add(policy, (p) => p.stop()).watch(log);
  const routing = started.add(await startRouting(f, datastore), (r) => r.stop());
  // After the first sync: vxlan_in reads the other nodes' addresses from the ipcache.
  attachNetfilter(f, datapath);
  started.add(monitor, (m) => m.stop()).start(datapath.eventsPath, log);
  // Services at the socket (issue 17): connects to a ClusterIP or NodePort go straight to a backend.
  const services = started.add(
    startServices({
      enabled: f.socketLb,
      pinDir: `${f.pinDir}/service-lb`,
      objectBytes: serviceLbObjectBytes,
      cgroupRoot: f.cgroupRoot !== undefined ? cgroup2RootUnder(f.cgroupRoot) : cgroup2Root(),
      sizes: f.lbMapSizes,
      datastore,
      log,
      nodeAddresses: () => policy.hostAddresses(),
      podNetns: () => endpoints.list().map((e) => e.netns),
      // The per-packet fallback in from-pod for what the socket hooks do not see.
      linkDatapath: (maps) => linkServiceNat(`${f.pinDir}/maps`, maps),
    }),
    (s) => s.close(),
  );
  policy.onSync(() => services.sync());
  // Its author looks at the object, not at this node's log (issue 31).
  if (kube) {
    const reportPolicyErrors = () => void kube.policyEvents.report(policy.policyErrors, datastore.objects().networkPolicies);
    policy.onSync(reportPolicyErrors);
    reportPolicyErrors(); // the first sync ran before this listener
  }
  started.add(flowRecorder, (r) => r.stop()).start();
  // DELs the CNI plugin queued while this agent was down are released before any new ADD is served.
  started.add(startDelQueueDrain({ ipam, endpoints, linksDir: `${f.pinDir}/links` }, `${f.stateDir}/${DEL_QUEUE_SUBDIR}`, log), (stop) => stop());
  reportStaleAllocations(ipam, log);
  const ctSweeper = started.add(new ConntrackSweeper(datapath.progPaths.ctSweep, datapath.maps.ct_counts, () => endpoints.list().map((e) => e.id), log), (s) => s.stop());
  ctSweeper.start(f.ctSweepIntervalMs);
  const reclaim = podLookups(f, kube, datastore);
  started.add(startIpamReconciler({ ipam, endpoints, log, ...reclaim }, { graceMs: f.ipamGcGraceMs, intervalMs: f.ipamGcIntervalMs }), (stop) => stop());
  const metricsServer = f.metricsAddress ? await serveMetrics(f.metricsAddress, metrics, log) : null;
  if (metricsServer) {
    log(`metrics at http://${formatMetricsAddress(metricsServer.bound)}/metrics`);
    started.add(metricsServer.server, (s) => (s.close(), s.closeAllConnections()));
  }

  const linksDir = `${f.pinDir}/links`;
  const podMtu = () => routing.podMtu();
  const routes: Route[] = [
    statusRoute({
      node: f.nodeName, pinDir: f.pinDir, ipam, endpoints, datapath, policy, datastore, startedAtMs, stateDisk, recoveries,
      mapFill: async () => [...(await mapFill.read()), ...(await services.mapFill())],
      metrics: { address: f.metricsAddress && formatMetricsAddress(metricsServer?.bound ?? f.metricsAddress), listening: metricsServer !== null },
    }),
    ...ipamRoutes({ ipam, endpoints, ...reclaim, ipamGcGraceMs: f.ipamGcGraceMs, podMtu, stateDisk, attachment: () => ({ fromPod: datapath.progPaths.fromPod, toPod: datapath.progPaths.toPod, linksDir }) }),
    ...endpointRoutes({ endpoints, ipam, datastore, linksDir, podMtu, stateDisk }),
    ...policyRoutes({ endpoints, policy, datapath }),
    explainRoute({ node: f.nodeName, endpoints, policy, serviceCidrs: f.serviceCIDRs }),
    ...monitorRoutes({ monitor }),
    ...flowRoutes({ store: flowStore, recorder: flowRecorder }),
    countersRoute(datapath),
    tcpHealthRoute(tcpHealth),
    ...securityRoutes({ runtime: security, reason: securityOff, modes: securityModes }),
    ...serviceRoutes(services),
  ];
  const refused = new PromCounter({ name: 'sluice_api_refused_total', help: 'API requests that would change state, refused to a caller that is not root (or --write-uid).', labelNames: ['route'], registers: [metrics.registry] });
  const server = await serveApi(f.socket, routes, log, {
    onRequest: (...a) => metrics.observeApiRequest(...a),
    mapError: (err) => stateDisk.apiFailure(err),
    access: f.apiAccess,
    onRefused: (route) => refused.inc({ route }),
  });
  stateDisk.start(STATE_DISK_PROBE_MS);
  log(`serving ${f.socket}; node ${f.nodeName}, pod CIDRs ${podCIDRs.join(', ')}`);
  kube?.serving();

  return async () => {
    // The API goes first: from now on nobody (`sluice local up`, the CNI plugin) takes this agent for a running one.
    server.close();
    server.closeAllConnections();
    fs.rmSync(f.socket, { force: true });
    await kube?.stop();
    await started.stopAll();
  };
}

/** The Kubernetes datastore, synced, with this node's pod CIDRs (loaded only in this mode). */
async function startKubernetes(f: AgentFlags): Promise<KubernetesMode> {
  const { startKubernetesMode } = await import('./datastore/kubernetes-agent.ts');
  return startKubernetesMode({
    kubeconfig: f.kubeconfig,
    nodeName: f.nodeName,
    podCIDRFlags: f.podCIDRs,
    cniConf: f.cniConf,
    cniConfTemplate: f.cniConfTemplate,
    daemonSet: f.daemonSet,
    log,
  });
}

/** The pinned datapath, loaded or adopted, with the flags' settings written to its config map. */
function startDatapath(f: AgentFlags): Datapath {
  ensureBpffs();
  const datapath = loadDatapath({ pinDir: f.pinDir, objectBytes: bpfObjectBytes() });
  log(`datapath ${datapath.adopted ? 'adopted from' : 'loaded and pinned at'} ${f.pinDir}, version ${datapath.runningVersion}`);
  const r = datapath.replaced;
  if (r) {
    log(`datapath: programs of version ${r.from} replaced by ${datapath.version}; ${r.links} TCX links switched${r.failed.length ? `, ${r.failed.length} NOT: ${r.failed.join('; ')}` : ''}`);
    if (r.migrated.length > 0) log(`datapath: maps migrated to new layouts: ${r.migrated.map((m) => `${m.map} (${m.action === 'copy' ? `${m.entries} entries copied` : 'reset'})`).join(', ')}`);
    const caught = (r.caughtUp ?? []).filter((c) => c.written + c.deleted + c.failed.length > 0);
    if (caught.length > 0) log(`datapath: caught up with the old programs' changes since the copy: ${caught.map((c) => `${c.map} (${c.written} written, ${c.deleted} deleted${c.failed.length ? `, ${c.failed.length} NOT: ${c.failed.slice(0, 3).join('; ')}` : ''})`).join(', ')}`);
  }
  datapath.maps.config.update(encodeU32(0), encodeDatapathConfig(f.datapathConfig));
  return datapath;
}

/**
 * TCP health per pod: the tracing object loaded or adopted under <bpf-dir>/trace, its programs
 * attached (or detached with --tcp-health off). A kernel that cannot run them costs the node
 * nothing else: the agent serves on, and GET /v1/tcp-health says why there is nothing.
 */
function startTcpHealth(f: AgentFlags, started: Stoppers): TcpHealth {
  let trace: Trace;
  try {
    trace = started.add(loadTrace({ pinDir: `${f.pinDir}/trace`, objectBytes: traceObjectBytes(), cgroupRoot: f.cgroupRoot !== undefined ? cgroup2RootUnder(f.cgroupRoot) : cgroup2Root(), attach: f.tcpHealth }), (t) => t.close());
  } catch (err: unknown) {
    const reason = `tracing programs not loaded: ${errorMessage(err)}`;
    log(`tcp health: ${reason}`);
    return new TcpHealth(null, { reason, log });
  }
  const changes = [...trace.attached.map((l) => `+${l}`), ...trace.removed.map((l) => `-${l}`), ...trace.missing.map((m) => `${m.name} not attached (${m.reason})`)];
  log(`tcp health: tracing ${trace.adopted ? 'adopted from' : 'loaded at'} ${f.pinDir}/trace${f.tcpHealth ? '' : ', detached (--tcp-health off)'}${changes.length ? `; links ${changes.join(', ')}` : ''}`);
  return new TcpHealth({ maps: trace.maps, links: () => trace.linksNow() }, { reason: f.tcpHealth ? undefined : 'detached (--tcp-health off)', log });
}

/**
 * Runtime security: the sensor object loaded or adopted under <bpf-dir>/security and attached, its
 * events read, and the rules (the shipped defaults, then --security-rules) run on them. Throws when
 * the object cannot be loaded; the agent serves on without it, and GET /v1/security says why.
 */
function startSecurity(f: AgentFlags, started: Stoppers, labels: (ns: string, pod: string) => Record<string, string>, registry: Registry): SecurityRuntime {
  const cgroupRoot = f.cgroupRoot !== undefined ? cgroup2RootUnder(f.cgroupRoot) : cgroup2Root();
  const loaded = started.add(loadSecurity({ pinDir: `${f.pinDir}/security`, objectBytes: securityObjectBytes(), cgroupRoot, attach: true }), (s) => s.close());
  const missing = loaded.missing.map((m) => `${m.name} not attached (${m.reason})`);
  log(`security: sensor ${loaded.adopted ? 'adopted from' : 'loaded at'} ${f.pinDir}/security${missing.length ? `; ${missing.join(', ')}` : ''}`);
  const sensor = started.add(new SecuritySensor({ security: loaded, labels, log }), (s) => s.stop());
  sensor.start();
  const runtime = started.add(new SecurityRuntime({ sensor, ruleFiles: f.securityRules, labels, log, registry }), (r) => r.stop());
  runtime.start();
  return runtime;
}

/** Routes to other nodes' pods (and in VXLAN mode the pod MTU), in place before the first ADD is served. */
async function startRouting(f: AgentFlags, datastore: Datastore): Promise<NodeRouting> {
  const routing = new NodeRouting({ nodeName: f.nodeName, mode: f.routing, nodes: () => clusterNodes(datastore.objects()), log });
  await routing.reconcile(true).then(
    (changes) => routing.logChanges(changes),
    (err: unknown) => log(`node routes (retried): ${errorMessage(err)}`),
  );
  routing.start();
  return routing;
}

/** The netfilter programs (Service egress, and the VXLAN guard in VXLAN mode), attached or detached to match. */
function attachNetfilter(f: AgentFlags, datapath: Datapath): void {
  const netfilter = syncNetfilterLinks({ dir: datapath.netfilterDir, programs: datapath.progPaths, vxlan: f.routing === 'vxlan', reload: !datapath.adopted || datapath.replaced !== null });
  if (netfilter.attached.length > 0) log(`netfilter hooks attached: ${netfilter.attached.join(', ')}`);
  if (netfilter.removed.length > 0) log(`netfilter hooks removed: ${netfilter.removed.join(', ')}`);
}

/**
 * What IPAM reconciliation asks the datastore. Without one, podExists is
 * undefined and reconciliation skips the "pod exists" criterion; a pod the
 * datastore shows running on this node never loses its address.
 */
function podLookups(f: AgentFlags, kube: KubernetesMode | null, datastore: Datastore) {
  const podExists = kube
    ? (namespace: string, name: string) => kube.datastore.podExists(namespace, name)
    : f.datastoreDir
    ? (namespace: string, name: string) => datastore.objects().pods.some((p) => p.metadata.namespace === namespace && p.metadata.name === name)
    : undefined;
  const podsRunningHere = podExists ? () => runningOn(datastore.objects().pods, f.nodeName) : undefined;
  return { podExists, podsRunningHere };
}

/** The endpoint and numbering stores as found at start (agent/store-check.ts): a damaged one is moved aside. */
function prepareStateStores(stateDir: string): { endpoints: StoreCheck; numbering: StoreCheck } {
  const inMemory = 'it is kept in memory until then, and rebuilt from the pinned maps at every start';
  return {
    endpoints: prepareStore(
      `${stateDir}/endpoints.db`,
      'endpoint',
      { rebuilding: 'rebuilding the endpoint records from the pinned endpoint map', refused: inMemory, schemaVersion: ENDPOINTS_SCHEMA_VERSION },
      log,
    ),
    numbering: prepareStore(
      `${stateDir}/numbering.db`,
      'identity numbering',
      { rebuilding: 'rebuilding the identity numbers from the pinned maps and the datastore', refused: inMemory, schemaVersion: NUMBERING_SCHEMA_VERSION },
      log,
    ),
  };
}

/**
 * Rebuilds a lost or damaged endpoint or numbering store from the pinned maps
 * (agent/endpoints-recovery.ts, agent/numbering-recovery.ts), endpoints first:
 * the numbering reads their addresses. Returns every damaged store of this
 * start, the IPAM's included, for `sluice status` and the metrics.
 */
async function rebuildStateStores(deps: {
  stateDir: string;
  stores: { endpoints: StoreCheck; numbering: StoreCheck };
  ipamStore: StoreCheck;
  datapath: Datapath;
  ipam: Ipam;
  endpoints: EndpointManager;
  numbering: NumberingStore;
  datastore: Datastore;
  socket: string;
}): Promise<StoreRecovery[]> {
  const { stores } = deps;
  // Missing, damaged, or a newer agent's that this one leaves untouched: served from memory, rebuilt from the kernel.
  const lost = (c: StoreCheck): boolean => c.missing || c.damage !== null || c.newer;
  const at = new Date().toISOString();
  const cause = (c: StoreCheck): string =>
    c.movedTo !== null ? `the damaged store moved aside to ${c.movedTo}`
    : c.newer ? 'the store, written by a newer agent, is left untouched; this one runs from memory'
    : c.damage !== null ? 'the damaged store could not be moved aside; this agent runs from memory'
    : MISSING;
  const recovery = (store: string, c: StoreCheck, rebuilt: string): StoreRecovery => ({ store, file: `${deps.stateDir}/${store}.db`, damage: c.damage ?? '', movedTo: c.movedTo, rebuilt, at });
  const out: StoreRecovery[] = [];
  if (deps.ipamStore.damage !== null) out.push(recovery('ipam', deps.ipamStore, 'allocations from the endpoint records, veths, the endpoint map and the running pods'));
  if (!lost(stores.endpoints) && !lost(stores.numbering)) return out;
  // A walk of every map the numbers live in (conntrack too): only on this path.
  const kernel = readKernelNumbers(deps.datapath.maps);
  if (lost(stores.endpoints)) {
    const plan = await restoreEndpoints({ endpoints: deps.endpoints, kernel, ipam: deps.ipam, datastore: deps.datastore, socket: deps.socket, cause: cause(stores.endpoints), log });
    if (stores.endpoints.damage !== null) out.push(recovery('endpoints', stores.endpoints, `${plan.records.length} endpoint(s) from the pinned endpoint map${plan.unplaced.length ? `, ${plan.unplaced.length} not placed` : ''}`));
  }
  if (lost(stores.numbering)) {
    const plan = restoreNumbering({ numbering: deps.numbering, kernel, datastore: deps.datastore, endpoints: deps.endpoints.list(), cause: cause(stores.numbering), log });
    if (stores.numbering.damage !== null) out.push(recovery('numbering', stores.numbering, `${plan.adopted.size} identity number(s) from the maps${plan.retired.length ? `, ${plan.retired.length} retired` : ''}`));
  }
  return out;
}

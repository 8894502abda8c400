/**
 * sluice-agent: the node daemon. Loads (or adopts) the pinned datapath, owns
 * IPAM and the endpoint maps, and serves the API on a root-only socket.
 */
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { ensureBpffs } from '../datapath/bpffs.ts';
import { bpfObjectBytes } from '../datapath/bpf-object.ts';
import { loadDatapath } from '../datapath/loader.ts';
import { syncNetfilterLinks } from '../datapath/netfilter.ts';
import { CT_MAX_PER_ENDPOINT, CT_TIMEOUT_OTHER_SEC, CT_TIMEOUT_TCP_SEC, FRAG_MAX_PER_ENDPOINT, FRAG_TIMEOUT_SEC, encodeDatapathConfig, encodeU32 } from '../datapath/abi.ts';
import { ConntrackSweeper, DEFAULT_CT_SWEEP_INTERVAL_MS } from './reclaim/conntrack-sweep.ts';
import { Ipam } from '../ipam/allocator.ts';
import { serveApi } from './api/server.ts';
import { DEFAULT_SOCKET } from '../contract/api-types.ts';
import { EndpointManager } from './endpoints.ts';
import { DEL_QUEUE_SUBDIR } from '../contract/del-queue.ts';
import { DEFAULT_IPAM_GC_GRACE_MS, DEFAULT_IPAM_GC_INTERVAL_MS, reportStaleAllocations, runningOn, startIpamReconciler } from './reclaim/ipam-reconcile.ts';
import { startDelQueueDrain } from './reclaim/del-queue-drain.ts';
import { log } from './log.ts';
import { LocalDirDatastore, NoDatastore, type Datastore } from './datastore/datastore.ts';
import type { KubernetesMode } from './datastore/kubernetes-agent.ts';
import { NumberingStore } from './policy-sync/numbering-store.ts';
import { StateDisk } from './state-disk.ts';
import { PolicyState } from './policy-sync/state.ts';
import { Monitor } from './monitor.ts';
import { makeResolver } from './api/monitor-routes.ts';
import { agentRoutes } from './api/routes.ts';
import { clusterNodes } from './datastore/cluster-view.ts';
import { NodeRouting } from './routing/routing.ts';
import { ROUTING_MODES, type RoutingMode } from './routing/plan.ts';
import { AgentMetrics } from './metrics/metrics.ts';
import { MapFillReader } from './metrics/map-fill.ts';
import { DEFAULT_METRICS_ADDRESS, formatMetricsAddress, parseMetricsAddress, serveMetrics } from './metrics/server.ts';
import { AGENT_VERSION } from './api/status-route.ts';
import { errorMessage } from '../lib/errors.ts';

/** Kubernetes' default Service range (kube-apiserver --service-cluster-ip-range). */
const DEFAULT_SERVICE_CIDR = '10.96.0.0/12';

/** Defaults of every path the agent uses; each is a flag so several agents can coexist. */
export const AGENT_DEFAULTS = {
  stateDir: '/var/lib/sluice',
  socket: DEFAULT_SOCKET,
  bpfDir: '/sys/fs/bpf/sluice',
  podCIDR: '10.244.0.0/24',
} as const;

const USAGE = `usage: sluice agent [--state-dir DIR] [--socket PATH] [--bpf-dir DIR] [--node-name NAME] [--pod-cidr CIDR]...

  --state-dir DIR   IPAM and endpoint store (default ${AGENT_DEFAULTS.stateDir})
  --socket PATH     root-only API socket (default ${AGENT_DEFAULTS.socket})
  --bpf-dir DIR     bpffs directory for pinned programs, maps and links (default ${AGENT_DEFAULTS.bpfDir})
  --node-name NAME  this node's name (default: the hostname)
  --pod-cidr CIDR   the node's pod CIDR; repeat for dual stack (default ${AGENT_DEFAULTS.podCIDR})
  --datastore-dir DIR
                    the local datastore (a directory of Kubernetes objects); none: no policies
  --datastore kubernetes [--kubeconfig PATH]
                    the cluster's API (in-cluster service account unless --kubeconfig): waits for the
                    initial lists and takes the pod CIDRs from this node's Node (--pod-cidr: fallback)
  --cni-conf FILE [--cni-conf-template FILE] [--daemonset NAMESPACE/NAME]
                    (kubernetes) write the CNI conflist once serving; remove it on SIGTERM only when
                    the DaemonSet or its namespace is being deleted (uninstall), never on a restart
  --routing native|vxlan
                    how pods reach other nodes' pods: routes via each node's InternalIP (default native),
                    or a VXLAN overlay over them (pod MTU lowered by the encapsulation)
  --metrics-address HOST:PORT
                    Prometheus metrics at http://HOST:PORT/metrics (default ${DEFAULT_METRICS_ADDRESS}; 0 disables)
  --service-cidr CIDR
                    the cluster's Service (ClusterIP) range, repeatable (default ${DEFAULT_SERVICE_CIDR})
  --ct-timeout-tcp-sec S, --ct-timeout-other-sec S
                    idle time after which a TCP (default ${CT_TIMEOUT_TCP_SEC}) or other (default ${CT_TIMEOUT_OTHER_SEC}) flow must pass policy again
  --ct-max-per-endpoint N
                    conntrack entries one pod may hold at a time; its further new flows are dropped
                    (default ${CT_MAX_PER_ENDPOINT}, a quarter of the table)
  --ct-sweep-interval-ms MS
                    period of removing expired conntrack and fragment entries (default ${DEFAULT_CT_SWEEP_INTERVAL_MS}; 0 never)
  --frag-max-per-endpoint N
                    fragmented datagrams one pod may have in flight (first fragment seen, not all bytes yet);
                    its further first fragments are dropped (default ${FRAG_MAX_PER_ENDPOINT})
  --frag-timeout-sec S
                    an incomplete fragmented datagram is forgotten this long after its first fragment
                    (default ${FRAG_TIMEOUT_SEC})
  --ipam-reserved CIDR|FIRST-LAST|IP
                    addresses never handed to pods; repeatable
  --ipam-gc-grace-ms MS
                    allocations younger than this are never reclaimed (default ${DEFAULT_IPAM_GC_GRACE_MS})
  --ipam-gc-interval-ms MS
                    period of reclaiming allocations of vanished containers (default ${DEFAULT_IPAM_GC_INTERVAL_MS})`;

function nonNegativeFlag(name: string, value: string | undefined, fallback: number, unit: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} '${value}' must be a non-negative number of ${unit}`);
  return n;
}

/** Runs the agent until SIGTERM or SIGINT. */
export async function runAgent(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'state-dir': { type: 'string', default: AGENT_DEFAULTS.stateDir },
      socket: { type: 'string', default: AGENT_DEFAULTS.socket },
      'bpf-dir': { type: 'string', default: AGENT_DEFAULTS.bpfDir },
      'node-name': { type: 'string', default: os.hostname() },
      'pod-cidr': { type: 'string', multiple: true },
      'ipam-reserved': { type: 'string', multiple: true },
      'datastore-dir': { type: 'string' },
      datastore: { type: 'string' },
      kubeconfig: { type: 'string' },
      'cni-conf': { type: 'string' },
      'cni-conf-template': { type: 'string' },
      daemonset: { type: 'string' },
      routing: { type: 'string', default: 'native' },
      'metrics-address': { type: 'string', default: DEFAULT_METRICS_ADDRESS },
      'ct-timeout-tcp-sec': { type: 'string' },
      'service-cidr': { type: 'string', multiple: true },
      'ct-timeout-other-sec': { type: 'string' },
      'ct-max-per-endpoint': { type: 'string' },
      'ct-sweep-interval-ms': { type: 'string' },
      'frag-max-per-endpoint': { type: 'string' },
      'frag-timeout-sec': { type: 'string' },
      'ipam-gc-grace-ms': { type: 'string' },
      'ipam-gc-interval-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const stateDir = values['state-dir'];
  const pinDir = values['bpf-dir'];
  if (values.datastore !== undefined && values.datastore !== 'kubernetes' && values.datastore !== 'local') {
    throw new Error(`--datastore '${values.datastore}' must be kubernetes or local (with --datastore-dir)`);
  }
  // Kubernetes mode: nothing is synced or served before the initial lists and this node's pod CIDRs are in.
  let kube: KubernetesMode | null = null;
  if (values.datastore === 'kubernetes') {
    const { startKubernetesMode } = await import('./datastore/kubernetes-agent.ts');
    kube = await startKubernetesMode({
      kubeconfig: values.kubeconfig,
      nodeName: values['node-name'],
      podCIDRFlags: values['pod-cidr'],
      cniConf: values['cni-conf'],
      cniConfTemplate: values['cni-conf-template'],
      daemonSet: values.daemonset,
      log,
    });
  }
  const podCIDRs = kube?.podCIDRs ?? values['pod-cidr'] ?? [AGENT_DEFAULTS.podCIDR];
  const routingMode = values.routing as RoutingMode;
  if (!ROUTING_MODES.includes(routingMode)) throw new Error(`--routing '${values.routing}' must be one of ${ROUTING_MODES.join(', ')}`);
  const ipamGcGraceMs = nonNegativeFlag('ipam-gc-grace-ms', values['ipam-gc-grace-ms'], DEFAULT_IPAM_GC_GRACE_MS, 'milliseconds');
  const ipamGcIntervalMs = nonNegativeFlag('ipam-gc-interval-ms', values['ipam-gc-interval-ms'], DEFAULT_IPAM_GC_INTERVAL_MS, 'milliseconds');
  const metricsAddress = parseMetricsAddress(values['metrics-address']);
  const startedAtMs = Date.now() - Math.round(process.uptime() * 1000);
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });

  ensureBpffs();
  const datapath = loadDatapath({ pinDir, objectBytes: bpfObjectBytes() });
  log(`datapath ${datapath.adopted ? 'adopted from' : 'loaded and pinned at'} ${pinDir}`);
  datapath.maps.config.update(
    encodeU32(0),
    encodeDatapathConfig({
      ctTimeoutTcpSec: nonNegativeFlag('ct-timeout-tcp-sec', values['ct-timeout-tcp-sec'], 0, 'seconds'),
      ctTimeoutOtherSec: nonNegativeFlag('ct-timeout-other-sec', values['ct-timeout-other-sec'], 0, 'seconds'),
      ctMaxPerEndpoint: nonNegativeFlag('ct-max-per-endpoint', values['ct-max-per-endpoint'], 0, 'entries'),
      fragMaxPerEndpoint: nonNegativeFlag('frag-max-per-endpoint', values['frag-max-per-endpoint'], 0, 'datagrams'),
      fragTimeoutSec: nonNegativeFlag('frag-timeout-sec', values['frag-timeout-sec'], 0, 'seconds'),
    }),
  );
  const stateDisk = new StateDisk(stateDir, log);
  const ipam = new Ipam(`${stateDir}/ipam.db`, podCIDRs, { reserved: values['ipam-reserved'] ?? [] });
  const datastoreDir = values['datastore-dir'];
  const numbering = new NumberingStore(`${stateDir}/numbering.db`, stateDisk);
  const datastore: Datastore = kube?.datastore ?? (datastoreDir ? new LocalDirDatastore(datastoreDir) : new NoDatastore());
  const policy = new PolicyState(datastore, datapath.maps, numbering, values['service-cidr'] ?? [DEFAULT_SERVICE_CIDR]);
  const endpoints = new EndpointManager(`${stateDir}/endpoints.db`, (eps) => policy.apply(eps), stateDisk);
  endpoints.identityOf = (id) => policy.identityOf(id);
  stateDisk.addStore('ipam', () => ipam.reopen());
  stateDisk.addStore('endpoints', () => endpoints.reopen());
  stateDisk.addStore('numbering', () => numbering.reopen());
  const mapFill = new MapFillReader(datapath.maps);
  const metrics = new AgentMetrics({
    node: values['node-name'],
    version: AGENT_VERSION,
    startedAtMs,
    readCounters: () => datapath.readCounters(),
    epCounters: datapath.maps.ep_counters,
    mapFill: () => mapFill.read(),
    endpoints: () => endpoints.list(),
    identities: () => policy.sync.state()?.identities.size ?? 0,
    policies: () => policy.datastore.objects().networkPolicies.length,
    policyRevision: () => policy.revision,
    ipam,
    monitorReceived: () => monitor.received,
  }, metricsAddress !== null);
  policy.onSynced = (stats, propagationMs) => metrics.observePolicySync(stats, propagationMs);
  await policy.init(() => endpoints.list());
  const restored = endpoints.resync();
  log(`endpoints restored: ${restored}; datastore ${policy.datastore.describe()}; ${policy.lastSync?.written ?? 0} map entries written, ${policy.lastSync?.deleted ?? 0} deleted`);
  policy.watch(log);
  // Routes to other nodes' pods (and in VXLAN mode the pod MTU) are in place before the first ADD is served.
  const routing = new NodeRouting({ nodeName: values['node-name'], mode: routingMode, nodes: () => clusterNodes(policy.datastore.objects()), log });
  await routing.reconcile(true).then(
    (changes) => routing.logChanges(changes),
    (err: unknown) => log(`node routes (retried): ${errorMessage(err)}`),
  );
  routing.start();
  // After the first sync: vxlan_in reads the other nodes' addresses from the ipcache.
  const netfilter = syncNetfilterLinks({ dir: datapath.netfilterDir, programs: datapath.progPaths, vxlan: routingMode === 'vxlan', reload: !datapath.adopted });
  if (netfilter.attached.length > 0) log(`netfilter hooks attached: ${netfilter.attached.join(', ')}`);
  if (netfilter.removed.length > 0) log(`netfilter hooks removed: ${netfilter.removed.join(', ')}`);
  const monitor = new Monitor(makeResolver(endpoints, policy));
  monitor.start(datapath.eventsPath, log);
  // DELs the CNI plugin queued while this agent was down are released before any new ADD is served.
  const stopDelQueue = startDelQueueDrain({ ipam, endpoints, linksDir: `${pinDir}/links` }, `${stateDir}/${DEL_QUEUE_SUBDIR}`, log);
  reportStaleAllocations(ipam, log);

  const podExists = kube
    ? (namespace: string, name: string) => kube.datastore.podExists(namespace, name)
    : datastoreDir
    ? (namespace: string, name: string) => policy.datastore.objects().pods.some((p) => p.metadata.namespace === namespace && p.metadata.name === name)
    : undefined;
  // Without a datastore (podExists undefined) reconciliation skips the "pod exists" criterion.
  // A pod the datastore shows running on this node never loses its address to reconciliation.
  const podsRunningHere = podExists ? () => runningOn(policy.datastore.objects().pods, values['node-name']) : undefined;
  const ctSweeper = new ConntrackSweeper(datapath.progPaths.ctSweep, datapath.maps.ct_counts, () => endpoints.list().map((e) => e.id), log);
  ctSweeper.start(nonNegativeFlag('ct-sweep-interval-ms', values['ct-sweep-interval-ms'], DEFAULT_CT_SWEEP_INTERVAL_MS, 'milliseconds'));
  const stopIpamReconciler = startIpamReconciler({ ipam, endpoints, log, podExists, podsRunningHere }, { graceMs: ipamGcGraceMs, intervalMs: ipamGcIntervalMs });
  const metricsServer = metricsAddress ? await serveMetrics(metricsAddress, metrics, log) : null;
  if (metricsServer) log(`metrics at http://${formatMetricsAddress(metricsServer.bound)}/metrics`);
  const metricsStatus = { address: metricsAddress && formatMetricsAddress(metricsServer?.bound ?? metricsAddress), listening: metricsServer !== null };
  const ctx = { node: values['node-name'], pinDir, ipam, endpoints, datapath, ipamGcGraceMs, policy, podExists, podsRunningHere, monitor, podMtu: () => routing.podMtu(), startedAtMs, mapFill: () => mapFill.read(), metrics: metricsStatus, stateDisk };
  const server = await serveApi(values.socket, agentRoutes(ctx), log, { onRequest: (...a) => metrics.observeApiRequest(...a), mapError: (err) => stateDisk.apiFailure(err) });
  stateDisk.start(1000);
  log(`serving ${values.socket}; node ${ctx.node}, pod CIDRs ${podCIDRs.join(', ')}`);
  kube?.serving();

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log(`${signal}: stopping (pinned programs and maps stay in place)`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  // The API goes first: from now on nobody (`sluice local up`, the CNI plugin) takes this agent for a running one.
  server.close();
  server.closeAllConnections();
  fs.rmSync(values.socket, { force: true });
  await kube?.stop();
  policy.stop();
  routing.stop();
  monitor.stop();
  stopDelQueue();
  stopIpamReconciler();
  ctSweeper.stop();
  stateDisk.stop();
  metricsServer?.server.close();
  metricsServer?.server.closeAllConnections();
  endpoints.close();
  numbering.close();
  ipam.close();
  datapath.close();
}

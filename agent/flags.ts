/**
 * The agent's command line: every flag, its default and its check, read once
 * into AgentFlags. A bad value is an error that names the flag, before the
 * agent has touched anything.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { CT_MAX_PER_ENDPOINT, CT_TIMEOUT_OTHER_SEC, CT_TIMEOUT_TCP_SEC, FRAG_MAX_PER_ENDPOINT, FRAG_TIMEOUT_SEC, type DatapathConfig } from '../datapath/abi.ts';
import { DEFAULT_SOCKET } from '../contract/api-types.ts';
import { DEFAULT_CT_SWEEP_INTERVAL_MS } from './reclaim/conntrack-sweep.ts';
import { DEFAULT_IPAM_GC_GRACE_MS, DEFAULT_IPAM_GC_INTERVAL_MS } from './reclaim/ipam-reconcile.ts';
import { ROUTING_MODES, type RoutingMode } from './routing/plan.ts';
import { DEFAULT_METRICS_ADDRESS, parseMetricsAddress, type MetricsAddress } from './metrics/server.ts';
import { DEFAULT_FLOW_METRIC_LABELS, FLOW_METRIC_LABELS, parseFlowMetricLabels, type FlowMetricLabel } from './metrics/flows.ts';
import { DEFAULT_FLOW_CAPACITY, MAX_FLOW_CAPACITY } from './flows/store.ts';
import { groupId, type ApiAccess } from './api/peer.ts';
import { DEFAULT_LB_MAP_SIZES, type LbMapSizes } from '../datapath/service-lb-loader.ts';

/** Kubernetes' default Service range (kube-apiserver --service-cluster-ip-range). */
const DEFAULT_SERVICE_CIDR = '10.96.0.0/12';

/** Defaults of every path the agent uses; each is a flag so several agents can coexist. */
export const AGENT_DEFAULTS = {
  stateDir: '/var/lib/sluice',
  socket: DEFAULT_SOCKET,
  bpfDir: '/sys/fs/bpf/sluice',
  podCIDR: '10.244.0.0/24',
} as const;

export const AGENT_USAGE = `usage: sluice agent [--state-dir DIR] [--socket PATH] [--bpf-dir DIR] [--node-name NAME] [--pod-cidr CIDR]...

  --state-dir DIR   IPAM and endpoint store (default ${AGENT_DEFAULTS.stateDir})
  --socket PATH     API socket (default ${AGENT_DEFAULTS.socket}), root-only unless --socket-group
  --socket-group NAME|GID
                    members of the group may connect and read (status, endpoints, flows, ...); every verb
                    that changes state stays root's (SO_PEERCRED), refused with 403 and counted
  --write-uid UID   a uid besides root that may change state (repeatable)
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
  --metrics-labels L,L...|none
                    the peer labels of the flow, DNS and HTTP metrics, from ${FLOW_METRIC_LABELS.join(', ')}
                    (default ${DEFAULT_FLOW_METRIC_LABELS.join(',')}; each adds series: agent/metrics/flows.ts)
  --l7 on|off       hand DNS and HTTP/1.x messages up from the datapath for flow records and metrics
                    (default on; off: the datapath does not look at payloads)
  --security on|off runtime security (default off: its hooks are node-wide): process, file and connect events of
                    every pod, Falco-style rules, kill and deny-connect actions (sluice security events)
  --security-rules PATH
                    rules (a file or a directory of *.yaml), repeatable, after the shipped defaults; reloaded
                    when they change; implies --security on
  --flow-records N
                    flow records the agent keeps for \`sluice observe --last\` (default ${DEFAULT_FLOW_CAPACITY}; 2 KiB each, in one
                    buffer allocated at start; at most ${MAX_FLOW_CAPACITY})
  --socket-lb on|off
                    ClusterIP Services translated in connect/sendmsg/recvmsg/getpeername hooks on the cgroup v2
                    root, for every socket of the node (default on; agent/services/); off (or a socket outside the
                    hierarchy): from-pod translates each packet to a Service and back (bpf/service-nat.h)
  --lb-services-max N, --lb-backends-max N, --lb-revnat-max N, --lb-affinity-max N
                    sizes of the load balancer's maps: frontends plus backend slots (default ${DEFAULT_LB_MAP_SIZES.services}),
                    backends (${DEFAULT_LB_MAP_SIZES.backends}), sockets x backends for reverse translation (${DEFAULT_LB_MAP_SIZES.revnat}),
                    client affinities (${DEFAULT_LB_MAP_SIZES.affinity}); pinned maps of other sizes are resized at start
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
                    period of reclaiming allocations of vanished containers (default ${DEFAULT_IPAM_GC_INTERVAL_MS})
  --tcp-health on|off
                    TCP health per pod (retransmits, connections, RTT) from tracing programs (default on;
                    off detaches them)
  --cgroup-root DIR the root of the host's cgroup v2 hierarchy (or a directory whose unified/ is), where the
                    RTT program attaches (default: the cgroup2 mount of this process; in a container,
                    whose cgroup namespace hides the host's root, mount the host's /sys/fs/cgroup and name it)`;

function nonNegativeFlag(name: string, value: string | undefined, fallback: number, unit: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} '${value}' must be a non-negative number of ${unit}`);
  return n;
}

/** The agent's flags, parsed and checked. */
export interface AgentFlags {
  stateDir: string;
  socket: string;
  /** Who may read and write through the socket (--socket-group, --write-uid). */
  apiAccess: ApiAccess;
  pinDir: string;
  nodeName: string;
  /** --pod-cidr flags (undefined: none given). */
  podCIDRs: string[] | undefined;
  ipamReserved: string[];
  datastore: 'kubernetes' | 'local' | undefined;
  datastoreDir: string | undefined;
  kubeconfig: string | undefined;
  cniConf: string | undefined;
  cniConfTemplate: string | undefined;
  daemonSet: string | undefined;
  routing: RoutingMode;
  /** null: metrics disabled. */
  metricsAddress: MetricsAddress | null;
  /** The peer labels of the flow metrics (--metrics-labels); empty for none. */
  metricsLabels: FlowMetricLabel[];
  /** Flow records kept for GET /v1/flows (--flow-records). */
  flowRecords: number;
  /** Runtime security on (--security, or any --security-rules). */
  security: boolean;
  securityRules: string[];
  serviceCIDRs: string[];
  /** Socket-level load balancing of Services (--socket-lb). */
  socketLb: boolean;
  /** The load balancer's map sizes (--lb-*-max). */
  lbMapSizes: LbMapSizes;
  /** The datapath's settings; 0 takes the datapath's default. */
  datapathConfig: DatapathConfig;
  ctSweepIntervalMs: number;
  ipamGcGraceMs: number;
  ipamGcIntervalMs: number;
  /** Attach the TCP health tracing programs (--tcp-health). */
  tcpHealth: boolean;
  /** --cgroup-root (undefined: the cgroup2 mount found in /proc/self/mountinfo). */
  cgroupRoot: string | undefined;
}

/** Reads argv; null when it asks for --help. Throws an Error naming the flag on a bad value. */
export function parseAgentFlags(argv: string[]): AgentFlags | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      'state-dir': { type: 'string', default: AGENT_DEFAULTS.stateDir },
      socket: { type: 'string', default: AGENT_DEFAULTS.socket },
      'socket-group': { type: 'string' },
      'write-uid': { type: 'string', multiple: true },
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
      'metrics-labels': { type: 'string', default: DEFAULT_FLOW_METRIC_LABELS.join(',') },
      'flow-records': { type: 'string' },
      l7: { type: 'string', default: 'on' },
      security: { type: 'string' },
      'security-rules': { type: 'string', multiple: true },
      'ct-timeout-tcp-sec': { type: 'string' },
      'service-cidr': { type: 'string', multiple: true },
      'socket-lb': { type: 'string', default: 'on' },
      'lb-services-max': { type: 'string' },
      'lb-backends-max': { type: 'string' },
      'lb-revnat-max': { type: 'string' },
      'lb-affinity-max': { type: 'string' },
      'ct-timeout-other-sec': { type: 'string' },
      'ct-max-per-endpoint': { type: 'string' },
      'ct-sweep-interval-ms': { type: 'string' },
      'frag-max-per-endpoint': { type: 'string' },
      'frag-timeout-sec': { type: 'string' },
      'ipam-gc-grace-ms': { type: 'string' },
      'ipam-gc-interval-ms': { type: 'string' },
      'tcp-health': { type: 'string', default: 'on' },
      'cgroup-root': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return null;
  if (values.datastore !== undefined && values.datastore !== 'kubernetes' && values.datastore !== 'local') {
    throw new Error(`--datastore '${values.datastore}' must be kubernetes or local (with --datastore-dir)`);
  }
  if (values['tcp-health'] !== 'on' && values['tcp-health'] !== 'off') throw new Error(`--tcp-health '${values['tcp-health']}' must be on or off`);
  if (values.l7 !== 'on' && values.l7 !== 'off') throw new Error(`--l7 '${values.l7}' must be on or off`);
  if (values['socket-lb'] !== 'on' && values['socket-lb'] !== 'off') throw new Error(`--socket-lb '${values['socket-lb']}' must be on or off`);
  if (values.security !== undefined && values.security !== 'on' && values.security !== 'off') throw new Error(`--security '${values.security}' must be on or off`);
  if (values.security === 'off' && values['security-rules']) throw new Error('--security off contradicts --security-rules');
  const routing = values.routing as RoutingMode;
  if (!ROUTING_MODES.includes(routing)) throw new Error(`--routing '${values.routing}' must be one of ${ROUTING_MODES.join(', ')}`);
  return {
    stateDir: values['state-dir'],
    socket: values.socket,
    apiAccess: {
      gid: values['socket-group'] === undefined ? null : groupId(values['socket-group']),
      writerUids: (values['write-uid'] ?? []).map((u) => {
        if (!/^\d+$/.test(u)) throw new Error(`--write-uid '${u}' must be a numeric uid`);
        return Number(u);
      }),
    },
    pinDir: values['bpf-dir'],
    nodeName: values['node-name'],
    podCIDRs: values['pod-cidr'],
    ipamReserved: values['ipam-reserved'] ?? [],
    datastore: values.datastore,
    datastoreDir: values['datastore-dir'],
    kubeconfig: values.kubeconfig,
    cniConf: values['cni-conf'],
    cniConfTemplate: values['cni-conf-template'],
    daemonSet: values.daemonset,
    routing,
    metricsAddress: parseMetricsAddress(values['metrics-address']),
    metricsLabels: parseFlowMetricLabels(values['metrics-labels']),
    flowRecords: positiveFlowRecords(values['flow-records']),
    security: values.security === 'on' || (values['security-rules'] ?? []).length > 0,
    securityRules: values['security-rules'] ?? [],
    serviceCIDRs: values['service-cidr'] ?? [DEFAULT_SERVICE_CIDR],
    socketLb: values['socket-lb'] === 'on',
    lbMapSizes: {
      services: mapSizeFlag('lb-services-max', values['lb-services-max'], DEFAULT_LB_MAP_SIZES.services),
      // At least 2: backend ids run from 1 and index lb_backend_flows.
      backends: mapSizeFlag('lb-backends-max', values['lb-backends-max'], DEFAULT_LB_MAP_SIZES.backends, 2),
      revnat: mapSizeFlag('lb-revnat-max', values['lb-revnat-max'], DEFAULT_LB_MAP_SIZES.revnat),
      affinity: mapSizeFlag('lb-affinity-max', values['lb-affinity-max'], DEFAULT_LB_MAP_SIZES.affinity),
    },
    datapathConfig: {
      ctTimeoutTcpSec: nonNegativeFlag('ct-timeout-tcp-sec', values['ct-timeout-tcp-sec'], 0, 'seconds'),
      ctTimeoutOtherSec: nonNegativeFlag('ct-timeout-other-sec', values['ct-timeout-other-sec'], 0, 'seconds'),
      ctMaxPerEndpoint: nonNegativeFlag('ct-max-per-endpoint', values['ct-max-per-endpoint'], 0, 'entries'),
      fragMaxPerEndpoint: nonNegativeFlag('frag-max-per-endpoint', values['frag-max-per-endpoint'], 0, 'datagrams'),
      fragTimeoutSec: nonNegativeFlag('frag-timeout-sec', values['frag-timeout-sec'], 0, 'seconds'),
      l7Off: values.l7 === 'off',
    },
    ctSweepIntervalMs: nonNegativeFlag('ct-sweep-interval-ms', values['ct-sweep-interval-ms'], DEFAULT_CT_SWEEP_INTERVAL_MS, 'milliseconds'),
    ipamGcGraceMs: nonNegativeFlag('ipam-gc-grace-ms', values['ipam-gc-grace-ms'], DEFAULT_IPAM_GC_GRACE_MS, 'milliseconds'),
    ipamGcIntervalMs: nonNegativeFlag('ipam-gc-interval-ms', values['ipam-gc-interval-ms'], DEFAULT_IPAM_GC_INTERVAL_MS, 'milliseconds'),
    tcpHealth: values['tcp-health'] === 'on',
    cgroupRoot: values['cgroup-root'],
  };
}

/** A map size flag: a whole number of entries, at least min (the kernel takes up to 2^31). */
function mapSizeFlag(name: string, text: string | undefined, fallback: number, min = 1): number {
  const n = nonNegativeFlag(name, text, fallback, 'entries');
  if (!Number.isInteger(n) || n < min || n > 2 ** 31) throw new Error(`--${name} '${text}' must be a whole number of entries from ${min} to ${2 ** 31}`);
  return n;
}

/** --flow-records: at least one record. */
function positiveFlowRecords(text: string | undefined): number {
  const n = nonNegativeFlag('flow-records', text, DEFAULT_FLOW_CAPACITY, 'records');
  if (n < 1 || !Number.isInteger(n) || n > MAX_FLOW_CAPACITY) throw new Error(`--flow-records '${text}' must be a whole number of records, from 1 to ${MAX_FLOW_CAPACITY}`);
  return n;
}

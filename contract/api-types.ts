/**
 * The agent's API over its unix socket (HTTP/JSON): request and response
 * bodies shared by the agent, the CNI plugin and the CLI.
 */

/** Default path of the agent's root-only API socket. */
export const DEFAULT_SOCKET = '/run/sluice/sluice.sock';

/** POST /v1/ipam/allocate */
export interface AllocateRequest {
  containerID: string;
  ifname: string;
  namespace?: string;
  pod?: string;
  /** The pod's netns path (CNI_NETNS), so reconciliation can tell when the container is gone. */
  netns?: string;
}

/** One address of a pod, with its gateway. */
export interface PodAddress {
  /** Address with prefix length, e.g. 10.244.0.5/32. */
  address: string;
  gateway: string;
  family: 4 | 6;
}

/** Where the agent pinned what the CNI plugin attaches. */
export interface DatapathPins {
  fromPod: string;
  toPod: string;
  linksDir: string;
}

/** Response of POST /v1/ipam/allocate. */
export interface AllocateResponse {
  ips: PodAddress[];
  datapath: DatapathPins;
  /** The MTU the pod's interface must have (e.g. lowered for a VXLAN overlay); absent: the CNI's configured or default MTU. */
  mtu?: number;
}

/** POST /v1/ipam/release */
export interface ReleaseRequest {
  containerID: string;
  ifname: string;
}

/** PUT /v1/endpoints: the attachment the CNI plugin built, to be put in the maps. */
export interface EndpointSpec {
  containerID: string;
  ifname: string;
  namespace: string;
  pod: string;
  netns: string;
  hostIfname: string;
  hostIfindex: number;
  /** MAC of the pod's interface. */
  mac: string;
  /** MAC of the host veth (the pod's gateway). */
  hostMac: string;
  /** Plain addresses, no prefix length. */
  ips: string[];
}

/** An endpoint as the agent knows it. */
export interface Endpoint extends EndpointSpec {
  id: number;
  identity: number;
  createdAt: number;
}

/** GET /v1/endpoints/:containerID/:ifname: one attachment as the agent knows it. */
export interface AttachmentResponse {
  /** The registered endpoint, or null when none is registered. */
  endpoint: Endpoint | null;
  /** Plain addresses the attachment holds in IPAM (empty when none). */
  addresses: string[];
  /** Where the attachment's TCX links are pinned. */
  linksDir: string;
  /** The MTU ADD gives pods when the network config names none (see AllocateResponse.mtu). */
  mtu?: number;
}

/** A local endpoint whose pod or namespace the datastore has not delivered yet. */
export interface AwaitingLabels {
  endpointId: number;
  namespace: string;
  pod: string;
}

/** GET /v1/status (cheap: CNI STATUS calls it); GET /v1/status?maps=true adds `maps`, counted in the kernel. */
export interface StatusResponse {
  node: string;
  /** Serving and in sync: the datastore's initial lists are in and the last sync of the maps succeeded. */
  ready: boolean;
  /** Why it is not ready (empty when ready). */
  notReady?: string[];
  podCIDRs: string[];
  endpoints: number;
  /** version: the datapath this agent carries; runningVersion: the one whose programs run (they differ after an upgrade that adopted older pins). */
  datapath: { pinDir: string; adopted: boolean; version?: string; runningVersion?: string };
  pools: { cidr: string; size: number; used: number }[];
  /** The agent process. */
  agent?: { pid: number; version: string; startedAt: string; uptimeSeconds: number };
  /** Where cluster objects come from and the last sync of them into the maps. */
  datastore?: StatusDatastore;
  /** Pod identities (reserved ones not counted). */
  identities?: number;
  /** Policy syncs since the agent started. */
  policyRevision?: number;
  /** NetworkPolicies Sluice cannot compile as written, with why: the pods they select stay isolated, their unreadable rules allow nothing. */
  policyErrors?: { namespace: string; name: string; problems: string[] }[];
  /** Endpoints isolated both ways until the datastore delivers their pod and namespace (their labels): policy/unknown-labels.ts. */
  awaitingLabels?: AwaitingLabels[];
  /** State stores this start found damaged and rebuilt from the node (agent/store-check.ts); the damaged file is kept at movedTo. */
  rebuiltStores?: { store: string; file: string; damage: string; movedTo: string | null; rebuilt: string; at: string }[];
  /** Metrics endpoint: address null when disabled; listening false when it could not be bound. */
  metrics?: { address: string | null; listening: boolean };
  /** Datapath map fill, only with ?maps=true. */
  maps?: StatusMapFill[];
}

/** StatusResponse.datastore. */
export interface StatusDatastore {
  /** e.g. 'local:/var/lib/sluice/local/datastore', 'none'. */
  backend: string;
  /** Same as policyRevision: syncs since start. */
  revision: number;
  lastSync: { at: string; durationMs: number; written: number; deleted: number } | null;
  pods: number;
  namespaces: number;
  policies: number;
  nodes: number;
}

/** One datapath map's fill in StatusResponse.maps. */
export interface StatusMapFill {
  name: string;
  /** Entries counted (a lower bound when truncated). */
  entries: number;
  maxEntries: number;
  /** True when counting stopped at the agent's limit (conntrack may hold more). */
  truncated: boolean;
  /** Entries the agent could not write because the map was full, since it started (the load balancer's maps). */
  refused?: number;
}

/** Error body of every failed request. */
export interface ApiError {
  error: string;
  /** Machine-readable kind, e.g. 'PoolExhausted', 'BadRequest', 'NotFound'. */
  kind: string;
}

/** One allocation as GET /v1/ipam lists it. */
export interface IpamAllocation {
  containerID: string;
  ifname: string;
  ip: string;
  namespace: string;
  pod: string;
  netns: string;
  /** The pod CIDR it was allocated from. */
  pool: string;
  createdAt: number;
  /** Set when the current pools would not have made it: 'outside-pod-cidrs', 'reserved', 'gateway', ... */
  stale?: string;
}

/** GET /v1/ipam: pools and every allocation; `stale` repeats the allocations the current pools would not have made. */
export interface IpamResponse {
  pools: { cidr: string; size: number; used: number; family: 4 | 6; gateway: string; reserved: string[] }[];
  allocations: IpamAllocation[];
  stale: (IpamAllocation & { stale: string })[];
}

/** POST /v1/ipam/reconcile: release allocations whose container is gone (CNI GC passes validAttachments). */
export interface ReconcileRequest {
  /** When given, every attachment not listed (and past the grace period) is released. */
  validAttachments?: { containerID: string; ifname: string }[];
  /** Attachments allocated more recently than this are kept (default: the agent's --ipam-gc-grace-ms). */
  graceMs?: number;
  /** Report what would be released, release nothing. */
  dryRun?: boolean;
}

/** One attachment released (or, on failure, not) by POST /v1/ipam/reconcile. */
export interface ReconciledAttachment {
  containerID: string;
  ifname: string;
  namespace: string;
  pod: string;
  ips: string[];
  reason: string;
}

/** Response of POST /v1/ipam/reconcile. */
export interface ReconcileResponse {
  released: ReconciledAttachment[];
  kept: number;
  failed: (ReconciledAttachment & { error: string })[];
}

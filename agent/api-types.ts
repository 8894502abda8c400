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

/** GET /v1/status */
export interface StatusResponse {
  node: string;
  ready: boolean;
  podCIDRs: string[];
  endpoints: number;
  datapath: { pinDir: string; adopted: boolean };
  pools: { cidr: string; size: number; used: number }[];
}

/** Error body of every failed request. */
export interface ApiError {
  error: string;
  /** Machine-readable kind, e.g. 'PoolExhausted', 'BadRequest', 'NotFound'. */
  kind: string;
}

/**
 * Flow records: what `sluice observe`, GET /v1/flows, the metrics and the
 * service map (`sluice ui`) read. One record per new flow (its policy
 * verdict), per dropped packet, and per DNS or HTTP/1.x message the datapath
 * hands up. Field names are a contract (README, "Flow records"): extend,
 * never rename.
 */

/** One end of a flow. */
export interface FlowEndpoint {
  ip: string;
  /** 0 for protocols without ports. */
  port: number;
  /** The security identity the datapath judged the address with. */
  identity: number;
  /** "namespace/pod" for a pod; "host", "remote-node", "world", "service", ... otherwise. */
  name: string;
  namespace?: string;
  pod?: string;
  /** The pod's labels, when it is a pod the agent knows. */
  labels?: Record<string, string>;
}

/** A NetworkPolicy a verdict names: one that allowed the flow, or one that isolates the pod that denied it. */
export interface FlowPolicyRef {
  namespace: string;
  name: string;
  direction: 'ingress' | 'egress';
  /** Index of the rule (in the policy's ingress or egress list) that allowed the flow; absent for an isolating policy. */
  rule?: number;
}

/** A DNS message (UDP, port 53). */
export interface DnsSummary {
  /** The message id that pairs a query with its response. */
  id: number;
  /** The first question's name, without the trailing dot. */
  query: string;
  /** The first question's type (A, AAAA, ...). */
  qtype: string;
  /** Of a response: NOERROR, NXDOMAIN, SERVFAIL, ... */
  rcode?: string;
  /** Of a response: the addresses (A, AAAA) and names (CNAME) it answers with. */
  answers?: string[];
  /** The message was cut (the datapath hands up its first 256 bytes): answers may be missing. */
  truncated?: boolean;
}

/** An HTTP/1.x message (cleartext TCP). */
export interface HttpSummary {
  /** "HTTP/1.0" or "HTTP/1.1". */
  version: string;
  /** Of a request, and of a response paired with its request. */
  method?: string;
  path?: string;
  /** Of a response. */
  status?: number;
  /** The request line was cut (the datapath hands up 256 bytes) before its version: path may be a prefix (also in the paired response); a request's version is then ''. */
  truncated?: boolean;
}

/** What a record says of an L7 message. */
export interface L7Summary {
  type: 'dns' | 'http';
  kind: 'request' | 'response';
  /** Of a response paired with its request: the time between the two, in ms. */
  latencyMs?: number;
  dns?: DnsSummary;
  http?: HttpSummary;
}

/** A Service frontend the flow was addressed to. */
export interface FlowService {
  ip: string;
  port: number;
  /** "namespace/name" when the agent knows the Service. */
  name?: string;
}

/** One flow record. */
export interface FlowRecord {
  /** ISO 8601, when the datapath saw the packet. */
  time: string;
  /** flow: a new flow's verdict; drop: a dropped packet; l7: a DNS or HTTP message; alert: a runtime security rule fired. */
  type: 'flow' | 'drop' | 'l7' | 'alert';
  verdict: 'ALLOWED' | 'DENIED' | 'DROPPED';
  /** Of a drop or denial: the datapath counter (DROP_POLICY_INGRESS, DROP_SPOOF, ...). */
  dropReason?: string;
  /** Why, in words ("policy", "spoofing", "no policy", ...). */
  reason: string;
  source: FlowEndpoint;
  destination: FlowEndpoint;
  /** TCP, UDP, SCTP, ICMP, ICMPv6, or the protocol number. */
  protocol: string;
  /** Of a TCP packet: the flags set (SYN, ACK, FIN, RST, PSH, URG, ECE, CWR). */
  tcpFlags?: string[];
  /** The policy direction that decided (ingress of the destination, egress of the source), '' when no policy applies. */
  direction: 'ingress' | 'egress' | '';
  /** The packet goes from the flow's responder to its opener. */
  isReply: boolean;
  /** The device the datapath saw the packet on. */
  interface: { index: number; name?: string };
  service?: FlowService;
  l7?: L7Summary;
  /** Of an alert: the rule, as `sluice security events` shows it in full (source: the pod; destination: a connect's peer, else empty). */
  alert?: { rule: string; priority: string; output: string; action: string };
  /** Of an allowed flow: the policies and rules that allowed it; of a denied one: the policies that isolate the pod, in the direction that denied. */
  policies?: FlowPolicyRef[];
  /** Length of the packet. */
  bytes: number;
  /** One line for people. */
  summary: string;
}

/** Records the agent could not show: each kind counted since it started. */
export interface FlowLosses {
  /** Events the datapath could not send: over its rate limit, or the ring buffer was full. */
  datapath: number;
  /** Records a slow follower (`observe --follow`, the UI) missed because its queue was full. */
  followers: number;
}

/** Response of GET /v1/flows (without follow). */
export interface FlowsResponse {
  flows: FlowRecord[];
  /** Records the agent's ring holds now (at most capacity). */
  held: number;
  capacity: number;
  lost: FlowLosses;
}

/** Filters of GET /v1/flows and `sluice observe`; each given one must match. */
export interface FlowFilter {
  /** Either end in this namespace. */
  namespace?: string;
  /** Either end is this pod ("ns/name" or "name"). */
  pod?: string;
  /** Either end's labels match this selector ("app=web,tier!=db", "env in (a,b)", "key", "!key"). */
  selector?: string;
  verdict?: 'ALLOWED' | 'DENIED' | 'DROPPED';
  type?: FlowRecord['type'];
  protocol?: string;
  /** Either end's port. */
  port?: number;
  /** Only records at or after this time (ISO 8601, or a duration back from now: 30s, 5m, 1h). */
  since?: string;
  /** Of L7 records: dns or http. */
  l7?: 'dns' | 'http';
}

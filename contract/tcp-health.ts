/**
 * GET /v1/tcp-health: TCP health per local pod, as the agent reads it from
 * its tracing programs (bpf/trace.h defines what each number counts).
 * Shared by the agent and the CLI (`sluice tcp-health`).
 */

/** Connection events of one pod (bpf/trace.h, struct tcp_counters). */
export interface TcpConnectionCounts {
  /** connect() that reached ESTABLISHED (SYN_SENT -> ESTABLISHED). */
  openedActive: number;
  /** Connections a listener accepted (SYN_RECV -> ESTABLISHED). */
  openedPassive: number;
  /** Established connections that ended other than by a reset received (orderly, local abort, timeout). */
  closed: number;
  /** Established connections ended by a reset received. */
  reset: number;
  /** Connections that never became established (SYN_SENT or SYN_RECV -> CLOSE). */
  failed: number;
}

/** One bucket of an RTT histogram: samples with fromUs <= RTT < toUs. */
export interface RttBucket {
  fromUs: number;
  toUs: number;
  count: number;
}

/** The round-trip times a pod's TCP connections measured (each sample, not the smoothed RTT). */
export interface RttSummary {
  samples: number;
  /** The sum of the samples in µs. */
  sumUs: number;
  /** The mean in µs; null without samples. */
  meanUs: number | null;
  /** Non-empty buckets only, in order; bucket bounds are powers of two. */
  buckets: RttBucket[];
}

/** The TCP health of one local pod: everything its network namespace's TCP sockets did while the programs ran. */
export interface PodTcpHealth {
  namespace: string;
  pod: string;
  /** The inode of the pod's network namespace, which the programs count by. */
  netnsInode: number;
  retransmits: number;
  connections: TcpConnectionCounts;
  rtt: RttSummary;
}

/** Response of GET /v1/tcp-health. */
export interface TcpHealthResponse {
  /** False when the tracing programs are not loaded or not attached (see reason). */
  enabled: boolean;
  reason?: string;
  /** Links attached now (tcp-retransmit, tcp-state, tcp-rtt). */
  links: string[];
  /** Every local pod whose network namespace is known, counted or not. */
  pods: PodTcpHealth[];
  /** Network namespaces counted that are no local pod's (the host's, others'): how many, and their totals. */
  unattributed: { netns: number; retransmits: number; connections: TcpConnectionCounts; rttSamples: number };
  /** Events the programs could not count because a map was full (a bounded map never breaks anything). */
  lost: { counters: number; rtt: number };
}

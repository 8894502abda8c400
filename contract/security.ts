/**
 * Runtime security (issue 19): the events the node's security programs see,
 * attributed to pods, and the alerts Falco-style rules raise on them. Shared
 * by the sensor (agent/security/), the rule engine (security/rules/), the
 * API, `sluice security events` and the flow records. Field names are a
 * contract: extend, never rename.
 */

/** Falco's evt.type names for the events Sluice sees. */
export type SecurityEventType = 'execve' | 'procexit' | 'openat' | 'openat2' | 'connect' | 'setuid';

/** The process an event is about. */
export interface SecurityProcess {
  /** Thread-group id, as the host sees it. */
  pid: number;
  /** The parent's pid. */
  ppid: number;
  /** Real uid (Falco's user.uid) after the event (an exec of a setuid binary: the uid it runs as). */
  uid: number;
  /** The uid before, when the event changed it (setuid, setuid exec). */
  previousUid?: number;
  /** comm: the name (proc.name), at most 15 bytes as the kernel keeps it. */
  name: string;
  /** The executable's absolute path (proc.exepath). */
  exepath: string;
  /** The arguments, argv[0] first, as far as the sensor read them (proc.cmdline is name + args[1..]). */
  args: string[];
  /** The parent's comm (proc.pname). */
  pname: string;
}

/** The pod a process belongs to (by its network namespace inode, recorded by the CNI plugin, or its cgroup). */
export interface SecurityPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** The container runtime's id of the pod (sandbox) when known (container.id). */
  containerId?: string;
  netnsInode: number;
}

/** One event. */
export interface SecurityEvent {
  /** ISO 8601. */
  time: string;
  type: SecurityEventType;
  proc: SecurityProcess;
  /** Absent for a host process. */
  pod?: SecurityPod;
  /** True when the process is no pod's. */
  host: boolean;
  /** procexit: how it ended (code when it exited, signal when a signal ended it). */
  exit?: { code: number; signal: number };
  /** openat/openat2: the absolute path (fd.name) and the open flags. */
  file?: { path: string; flags: number; flagNames: string[] };
  /**
   * connect: the destination (fd.sip, fd.sport). With socket set, no connect but
   * a socket() a deny-connect rule refused (a raw or SCTP socket could reach any
   * port): ip is the unspecified address, port 0.
   */
  connect?: { ip: string; port: number; family: 4 | 6; protocol: 'TCP' | 'UDP' | 'SCTP' | 'RAW'; socket?: 'raw' | 'sctp' };
  /** What the datapath did on the spot: a kill rule's SIGKILL at exec, a deny-connect rule's EPERM. */
  enforced?: 'killed' | 'denied';
}

/** Falco's priorities, most severe first. */
export const PRIORITIES = ['EMERGENCY', 'ALERT', 'CRITICAL', 'ERROR', 'WARNING', 'NOTICE', 'INFORMATIONAL', 'DEBUG'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** What a rule does besides alerting: kill (SIGKILL at exec) or deny-connect (EPERM). */
export type RuleAction = 'alert' | 'kill' | 'deny-connect';

/** An alert, as Falco writes its JSON output (plus the event it is about, and the action). */
export interface SecurityAlert {
  time: string;
  rule: string;
  priority: Priority;
  /** The rule's output with its %fields filled in. */
  output: string;
  output_fields: Record<string, string | number | boolean | null>;
  tags: string[];
  source: 'syscall';
  hostname: string;
  action: RuleAction;
  event: SecurityEvent;
}

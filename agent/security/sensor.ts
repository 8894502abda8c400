/**
 * The agent side of the runtime security sensor (issue 19): reads the
 * security object's ring buffer, turns each record into a SecurityEvent
 * attributed to its pod (netns inode → pod, from the endpoint list), hands
 * it to the subscribers (the rule engine, the API stream), counts what it
 * received and what the kernel lost, and writes the kill and deny-connect
 * maps the rule engine asks for.
 *
 * Wiring (agent/main.ts): loadSecurity() (datapath/security-loader.ts), then
 * new SecuritySensor({ security, labels, log }), start(), track() on every
 * endpoint sync, subscribe() for the rule engine, setKill()/setDenyConnect()
 * with what the rules compile to (again after track(): entries of pods
 * that had not registered yet are written then), stop() last.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Endpoint } from '../../contract/api-types.ts';
import type { SecurityEvent } from '../../contract/security.ts';
import { closeFd, objGet } from '../../datapath/libbpf.ts';
import { RingBufferReader } from '../../datapath/ringbuf.ts';
import { SecBucket, SecConfigFlag, SecStat, decodeSecBudget, decodeSecRecord, encodeSecurityConfig, encodeU32Key, sumSecStat } from '../../datapath/security-abi.ts';
import type { SecurityMaps } from '../../datapath/security-loader.ts';
import { errorMessage } from '../../lib/errors.ts';
import { buildEvent } from './event-builder.ts';
import { connectMapEntries, killMapEntries, syncMap, type DenyConnectEntry, type KillEntry } from './enforcement.ts';
import { PodIndex } from './pod-index.ts';
import { ProcessTable } from './process-table.ts';

const POLL_INTERVAL_MS = 100;

/**
 * Whether this process sees the host's pids in /proc: the programs report
 * pids as the host's pid namespace numbers them, so in a pod without
 * hostPID, /proc/<pid> would be some other process (NSpid lists one pid per
 * nested namespace; one means the host's).
 */
export function seesHostPids(status = '/proc/self/status'): boolean {
  const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(status, 'utf8'));
  return nspid !== null && nspid[1]!.trim().split(/\s+/).length === 1;
}

/**
 * Events one pod (or the host, or a namespace that is no pod's) lost, of one
 * kind: over its own budget, or to a full ring buffer. Each namespace has its
 * own budget, so one pod's flood shows here as that pod's losses only.
 */
export interface SecurityPodLoss {
  /** Absent for the host and for a namespace that is no known pod's. */
  namespace?: string;
  pod?: string;
  host: boolean;
  netns: number;
  kind: 'process' | 'files';
  budget: number;
  ringbuf: number;
}

/** What the sensor counted: records received, records it could not decode, events the kernel dropped. */
export interface SecuritySensorStats {
  received: number;
  undecoded: number;
  lost: { budget: number; ringbuf: number; setuid: number; total: number };
  /** The budget and ring buffer losses by namespace and kind (only those with a loss). */
  lostByPod: SecurityPodLoss[];
  killed: number;
  denied: number;
}

export interface SecuritySensorOptions {
  /** The loaded object (loadSecurity()): its pinned ring buffer and maps. */
  security: { eventsPath: string; maps: SecurityMaps };
  /** A pod's labels (the lead's resolver over the cluster view). */
  labels: (namespace: string, pod: string) => Record<string, string>;
  log: (message: string) => void;
  /** The host's netns inode; default: this process's (the agent runs in the host's). */
  hostNetns?: number;
  /** Also report the host's opens / connects (off: only pods', the host's execs, exits and setuid calls). */
  hostOpens?: boolean;
  hostConnects?: boolean;
  /** Whether /proc shows the host's pids; default: seesHostPids(). */
  hostPids?: boolean;
  /** Swappable in tests: netns path → inode. */
  inodeOf?: (path: string) => number;
  pollIntervalMs?: number;
}

function noProc(): never {
  throw new Error('no host /proc');
}

export class SecuritySensor {
  private readonly opts: SecuritySensorOptions;
  private readonly pods: PodIndex;
  private readonly processes: ProcessTable;
  /** False in a pod without hostPID: no /proc lookups (binary of a process not seen at exec, paths relative to a dirfd). */
  private readonly procUsable: boolean;
  private readonly listeners = new Set<(e: SecurityEvent) => void>();
  private readonly bootOffsetMs = Date.now() - Number(process.hrtime.bigint() / 1_000_000n);
  private reader: RingBufferReader | null = null;
  private fd = -1;
  private timer: NodeJS.Timeout | null = null;
  private kill: readonly KillEntry[] = [];
  private denyConnect: readonly DenyConnectEntry[] = [];
  private received = 0;
  private undecoded = 0;
  /** Losses by budget entry ("netns:bucket"), summed across the LRU evicting and making an entry again. */
  private readonly losses = new Map<string, { netns: number; bucket: number; budget: number; ringbuf: number; seenBudget: number; seenRingbuf: number }>();
  readonly hostNetns: number;

  constructor(opts: SecuritySensorOptions) {
    this.opts = opts;
    this.pods = new PodIndex({ inodeOf: opts.inodeOf, log: opts.log });
    this.hostNetns = opts.hostNetns ?? statSync('/proc/self/ns/net').ino;
    this.procUsable = opts.hostPids ?? seesHostPids();
    this.processes = new ProcessTable({ procfs: this.procUsable ? '/proc' : null });
    if (!this.procUsable) opts.log('security sensor: not in the host pid namespace (no hostPID): processes running before it started show no binary, paths relative to a directory fd stay relative');
  }

  /** Tells the programs which netns is the host's, opens the ring buffer and polls it. Throws BpfError. */
  start(): void {
    const flags = (this.opts.hostOpens ? SecConfigFlag.HOST_OPENS : 0) | (this.opts.hostConnects ? SecConfigFlag.HOST_CONNECTS : 0);
    this.opts.security.maps.security_config.update(encodeU32Key(0), encodeSecurityConfig(this.hostNetns, flags));
    this.fd = objGet(this.opts.security.eventsPath, 'security events ring buffer');
    this.reader = new RingBufferReader(this.fd, (record) => this.deliver(record));
    this.timer = setInterval(() => {
      try {
        this.poll();
      } catch (err: unknown) {
        this.opts.log(`security sensor: ${errorMessage(err)}`);
      }
    }, this.opts.pollIntervalMs ?? POLL_INTERVAL_MS);
    this.timer.unref();
  }

  /** Delivers every pending record now; returns how many. */
  poll(): number {
    return this.reader?.poll() ?? 0;
  }

  /** Stops polling and releases the ring buffer (the maps and programs stay as they are). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.reader?.close();
    this.reader = null;
    if (this.fd >= 0) closeFd(this.fd);
    this.fd = -1;
  }

  /** Follows the endpoints (call on every endpoint sync); rewrites the action maps when pods came or went. */
  track(endpoints: readonly Endpoint[]): void {
    if (!this.pods.track(endpoints)) return;
    try {
      this.writeKill();
      this.writeDenyConnect();
    } catch (err: unknown) {
      this.opts.log(`security sensor: action maps: ${errorMessage(err)}`);
    }
  }

  /** Calls listener with every event until the returned function is called. */
  subscribe(listener: (e: SecurityEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Makes the kill map hold exactly these entries. Throws on a binary name that is no file name, or a kernel error. */
  setKill(entries: readonly KillEntry[]): { written: number; deleted: number } {
    this.kill = [...entries];
    return this.writeKill();
  }

  /** Makes the deny-connect map hold exactly these entries (merged per pod). Throws when a pod ends up with too many ports. */
  setDenyConnect(entries: readonly DenyConnectEntry[]): { written: number; deleted: number } {
    this.denyConnect = [...entries];
    return this.writeDenyConnect();
  }

  /** Received and lost events, and the actions taken, so far. */
  stats(): SecuritySensorStats {
    const stat = (index: number) => sumSecStat(this.opts.security.maps.security_stats.lookupPerCpu(encodeU32Key(index)));
    const budget = stat(SecStat.LOST_BUDGET);
    const ringbuf = stat(SecStat.LOST_RINGBUF);
    const setuid = stat(SecStat.LOST_SETUID);
    return {
      received: this.received,
      undecoded: this.undecoded,
      lost: { budget, ringbuf, setuid, total: budget + ringbuf + setuid },
      lostByPod: this.lostByPod(),
      killed: stat(SecStat.KILLED),
      denied: stat(SecStat.DENIED),
    };
  }

  /** Reads the kernel's budget entries and names the namespaces that lost events. */
  private lostByPod(): SecurityPodLoss[] {
    const map = this.opts.security.maps.security_budget;
    for (const key of map.keys()) {
      const value = map.lookup(key);
      if (!value) continue; // evicted meanwhile
      const b = decodeSecBudget(key, value);
      const id = `${b.netns}:${b.bucket}`;
      const acc = this.losses.get(id) ?? { netns: b.netns, bucket: b.bucket, budget: 0, ringbuf: 0, seenBudget: 0, seenRingbuf: 0 };
      // A count below the last one read: the entry was evicted and made again, counting from 0.
      acc.budget += b.lostBudget >= acc.seenBudget ? b.lostBudget - acc.seenBudget : b.lostBudget;
      acc.ringbuf += b.lostRingbuf >= acc.seenRingbuf ? b.lostRingbuf - acc.seenRingbuf : b.lostRingbuf;
      acc.seenBudget = b.lostBudget;
      acc.seenRingbuf = b.lostRingbuf;
      this.losses.set(id, acc);
    }
    const out: SecurityPodLoss[] = [];
    for (const acc of this.losses.values()) {
      if (acc.budget === 0 && acc.ringbuf === 0) continue;
      const pod = this.pods.pod(acc.netns);
      out.push({
        ...(pod ? { namespace: pod.namespace, pod: pod.name } : {}),
        host: acc.netns === this.hostNetns,
        netns: acc.netns,
        kind: acc.bucket === SecBucket.FILES ? 'files' : 'process',
        budget: acc.budget,
        ringbuf: acc.ringbuf,
      });
    }
    return out;
  }

  private writeKill(): { written: number; deleted: number } {
    return syncMap(this.opts.security.maps.security_kill, killMapEntries(this.kill, (ns, name) => this.pods.inodeOfPod(ns, name)));
  }

  private writeDenyConnect(): { written: number; deleted: number } {
    return syncMap(this.opts.security.maps.security_connect, connectMapEntries(this.denyConnect, (ns, name) => this.pods.inodeOfPod(ns, name)));
  }

  private deliver(record: Buffer): void {
    this.received++;
    let built: ReturnType<typeof buildEvent>;
    try {
      const r = decodeSecRecord(record);
      if (!r) {
        this.undecoded++;
        return;
      }
      built = buildEvent(r, {
        pod: (inode) => this.pods.pod(inode),
        labels: this.opts.labels,
        process: (pid) => this.processes.get(pid),
        bootOffsetMs: this.bootOffsetMs,
        ...(this.procUsable ? {} : { readlink: noProc }),
      });
      if (built.exec) this.processes.exec(r.h.pid, built.exec);
      if (r.kind === 'exit') this.processes.exit(r.h.pid);
    } catch (err: unknown) {
      this.undecoded++;
      this.opts.log(`security sensor: record of ${record.length} bytes: ${errorMessage(err)}`);
      return;
    }
    for (const listener of this.listeners) {
      try {
        listener(built.event);
      } catch (err: unknown) {
        this.opts.log(`security sensor: listener: ${errorMessage(err)}`);
      }
    }
  }
}

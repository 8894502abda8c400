/**
 * One long-lived prober per model pod, started inside the pod's network
 * namespace, fed probe requests over stdin. Probes run in parallel, bounded
 * per prober; every probe gets a source port never used before in this run
 * (see prober.ts). Stops exactly the processes it started, by PID.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { ROOT } from './local-cluster.ts';
import type { Protocol } from './model.ts';

const NODE = path.join(ROOT, 'node_modules/.bin/node');
const PROBER = path.join(ROOT, 'conformance/netpol/prober.ts');
const MAX_IN_FLIGHT_PER_PROBER = 48;
const PROBER_START_TIMEOUT_MS = 15_000;
/** Source ports handed out per source pod: above the servers' ports, wrapping around in very long runs. */
const FIRST_SOURCE_PORT = 10_000;
const LAST_SOURCE_PORT = 60_999;

/** One probe to run. */
export interface ProbeSpec {
  from: string;
  ip: string;
  protocol: Protocol;
  port: number;
  timeoutMs: number;
  /** A source port of the caller's choosing (only the flow-reuse check sets one); otherwise a fresh one. */
  sourcePort?: number;
}

/** What a probe found. */
export interface ProbeOutcome {
  ok: boolean;
  ms: number;
  sourcePort: number;
  error?: string;
}

interface Pending {
  resolve: (o: ProbeOutcome) => void;
  sourcePort: number;
}

class Prober {
  readonly child: ChildProcessWithoutNullStreams;
  private readonly pending = new Map<number, Pending>();
  private readonly queue: (() => void)[] = [];
  private inFlight = 0;
  private nextId = 1;
  private nextSourcePort = FIRST_SOURCE_PORT;
  private stderr = '';
  readonly ready: Promise<void>;

  constructor(netns: string) {
    this.child = spawn('ip', ['netns', 'exec', netns, NODE, PROBER], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    const lines = readline.createInterface({ input: this.child.stdout });
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`prober in ${netns} did not start: ${this.stderr}`)), PROBER_START_TIMEOUT_MS);
      lines.on('line', (line) => {
        const msg = JSON.parse(line) as { ready?: boolean; id?: number; ok?: boolean; ms?: number; error?: string };
        if (msg.ready) {
          clearTimeout(timer);
          resolve();
          return;
        }
        const p = this.pending.get(msg.id ?? -1);
        if (!p) return;
        this.pending.delete(msg.id!);
        this.inFlight--;
        p.resolve({ ok: msg.ok === true, ms: msg.ms ?? 0, sourcePort: p.sourcePort, ...(msg.error ? { error: msg.error } : {}) });
        this.queue.shift()?.();
      });
      this.child.on('exit', (code) => {
        clearTimeout(timer);
        const err = `prober in ${netns} exited (${code}): ${this.stderr}`;
        reject(new Error(err));
        for (const p of this.pending.values()) p.resolve({ ok: false, ms: 0, sourcePort: p.sourcePort, error: err });
        this.pending.clear();
      });
    });
  }

  probe(spec: ProbeSpec): Promise<ProbeOutcome> {
    return new Promise((resolve) => {
      const start = () => {
        this.inFlight++;
        const id = this.nextId++;
        const sourcePort = spec.sourcePort ?? this.nextSourcePort;
        if (spec.sourcePort === undefined) this.nextSourcePort = sourcePort >= LAST_SOURCE_PORT ? FIRST_SOURCE_PORT : sourcePort + 1;
        this.pending.set(id, { resolve, sourcePort });
        this.child.stdin.write(JSON.stringify({ id, ip: spec.ip, port: spec.port, protocol: spec.protocol, timeoutMs: spec.timeoutMs, sourcePort }) + '\n');
      };
      if (this.inFlight < MAX_IN_FLIGHT_PER_PROBER) start();
      else this.queue.push(start);
    });
  }

  stop(): void {
    this.child.stdin.end();
    if (this.child.exitCode === null && this.child.pid) {
      // Give it a moment to finish by itself; then end it, by its PID only.
      const pid = this.child.pid;
      setTimeout(() => {
        if (this.child.exitCode === null && this.child.signalCode === null) process.kill(pid, 'SIGKILL');
      }, 2000).unref();
    }
  }
}

/** Probers for a set of pods, keyed "ns/pod". */
export class ProbePool {
  private readonly probers = new Map<string, Prober>();

  /** Starts one prober per pod (pod → netns name) and waits until all are ready. */
  async start(netnsByPod: Map<string, string>): Promise<void> {
    for (const [pod, netns] of netnsByPod) this.probers.set(pod, new Prober(netns));
    await Promise.all([...this.probers.values()].map((p) => p.ready));
  }

  /** Runs one probe from its source pod's prober. */
  probe(spec: ProbeSpec): Promise<ProbeOutcome> {
    const p = this.probers.get(spec.from);
    if (!p) throw new Error(`no prober for pod ${spec.from}`);
    return p.probe(spec);
  }

  /** Stops every prober this pool started. */
  async stop(): Promise<void> {
    const exits = [...this.probers.values()].map(
      (p) => new Promise<void>((resolve) => (p.child.exitCode !== null || p.child.signalCode !== null ? resolve() : p.child.once('exit', () => resolve()))),
    );
    for (const p of this.probers.values()) p.stop();
    await Promise.all(exits);
    this.probers.clear();
  }
}

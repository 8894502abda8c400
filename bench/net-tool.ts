/**
 * The TypeScript side of bench/net-tool.c: builds it with the machine's gcc
 * into a temporary directory, and runs its server, its connection-rate and
 * request/response clients, and iperf3, inside named network namespaces.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { killPid, onCleanup, sh } from './cleanup.ts';

const SOURCE = path.join(import.meta.dirname, 'net-tool.c');
const SERVER_READY_TIMEOUT_MS = 10_000;
/** iperf3's default port; every server namespace runs one. */
export const IPERF_PORT = 5201;
/** Echo ports of net-tool serve: 32 ports on an aligned block (one policy prefix, one iptables range). */
export const ECHO_BASE_PORT = 7168;
/** How many echo ports (see net-tool.c: more ports, more distinct 5-tuples). */
export const ECHO_PORTS = 32;
/**
 * Clients run on CPU 0 and servers on CPU 1 (when there are two): every
 * datapath then pays the same cross-CPU wake-up per round trip, instead of
 * whatever the scheduler picked in that run (on 2 cores, same-CPU round
 * trips are ~4x faster, which would swamp the datapath differences).
 */
const PIN = os.cpus().length >= 2;
const CLIENT_CPU = '0';
const SERVER_CPU = '1';
const pinned = (cpu: string, cmd: string[]): string[] => (PIN ? ['taskset', '-c', cpu, ...cmd] : cmd);

/** Compiles net-tool.c (once per process); returns the binary's path. */
export function buildNetTool(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-tool-'));
  onCleanup(`tool dir ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'net-tool');
  sh('gcc', ['-O2', '-Wall', '-o', bin, SOURCE]);
  return bin;
}

/** Starts a long-running command in a netns; resolves once it printed `readyText` (or at once when none); killed at cleanup. */
export async function startInNetns(netns: string, cmd: string[], readyText?: string): Promise<number> {
  const child = spawn('ip', ['netns', 'exec', netns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid!;
  onCleanup(`process ${pid} (${cmd[0]} in ${netns})`, () => killPid(pid));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd.join(' ')} in ${netns} not ready after ${SERVER_READY_TIMEOUT_MS} ms: ${out}`)), SERVER_READY_TIMEOUT_MS);
    const check = () => {
      if (!readyText || out.includes(readyText)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', (c: Buffer) => ((out += c.toString()), check()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => reject(new Error(`${cmd.join(' ')} in ${netns} exited ${code}: ${out}`)));
    if (!readyText) setTimeout(check, 300);
  });
  child.stdout.removeAllListeners('data');
  child.stdout.resume();
  child.stderr.resume();
  child.removeAllListeners('exit');
  return pid;
}

/** Starts the echo server and an iperf3 server in the netns. */
export async function startServers(tool: string, netns: string): Promise<void> {
  await startInNetns(netns, pinned(SERVER_CPU, [tool, 'serve', String(ECHO_BASE_PORT), String(ECHO_PORTS)]), 'ready');
  await startInNetns(netns, pinned(SERVER_CPU, ['iperf3', '-s', '-p', String(IPERF_PORT), '--forceflush']), 'Server listening');
}

function runJson<T>(netns: string, cmd: string[], timeoutMs: number): T {
  const r = spawnSync('ip', ['netns', 'exec', netns, ...pinned(CLIENT_CPU, cmd)], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} in ${netns} exited ${r.status ?? r.signal}: ${r.stderr}${r.stdout.slice(0, 500)}`);
  return JSON.parse(r.stdout) as T;
}

/** Result of a connection-rate run. */
export interface CrrResult {
  connections: number;
  failed: number;
  seconds: number;
  perSecond: number;
  nextIndex: number;
}

/** Connection-index cursor: every run continues where the last one stopped, so no 5-tuple repeats in a whole benchmark. */
let nextConnection = 0;

/** New connections per second from netns to ip, `inflight` at a time, for `seconds` (http: each request an HTTP/1.1 request line). */
export function connectionRate(tool: string, netns: string, ip: string, seconds: number, inflight: number, opts: { http?: boolean } = {}): CrrResult {
  const args = [tool, 'crr', ip, String(ECHO_BASE_PORT), String(ECHO_PORTS), String(nextConnection), String(seconds), String(inflight), ...(opts.http ? ['http'] : [])];
  const r = runJson<CrrResult>(netns, args, (seconds + 30) * 1000);
  nextConnection = r.nextIndex;
  return r;
}

/** Result of a request/response run (latencies in microseconds). */
export interface RrResult {
  roundTrips: number;
  perSecond: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
}

/** Round trips of one byte on one connection. */
export function requestResponse(tool: string, netns: string, ip: string, count: number): RrResult {
  return runJson<RrResult>(netns, [tool, 'rr', ip, String(ECHO_BASE_PORT), String(count)], 120_000);
}

/** iperf3 TCP throughput from netns to ip in Gbit/s (receiver side, after a 1 s omitted warm-up). */
export function throughputGbps(netns: string, ip: string, seconds: number, streams: number): number {
  const r = runJson<{ end: { sum_received: { bits_per_second: number } } }>(
    netns,
    ['iperf3', '-c', ip, '-p', String(IPERF_PORT), '-t', String(seconds), '-O', '1', '-P', String(streams), '-J'],
    (seconds + 30) * 1000,
  );
  return r.end.sum_received.bits_per_second / 1e9;
}

/** One outcome change seen by the prober: CLOCK_MONOTONIC ns of the first attempt with the new outcome. */
export interface ProbeEvent {
  ns: bigint;
  allowed: boolean;
}

/** How long each prober attempt may take to complete its handshake before it counts as dropped. */
const PROBE_TIMEOUT_US = 3000;
/** Prober attempts start at most this often (its resolution for allowed → denied is about this plus the timeout). */
const PROBE_PACE_US = 1000;
/** Connection indexes of a prober: far from the connection-rate cursor, so the two never share a 5-tuple. */
const PROBER_FIRST_INDEX = 1_000_000;

/** A running enforcement prober (net-tool watch) from netns to ip. */
export class Prober {
  readonly events: ProbeEvent[] = [];
  private waiters: (() => void)[] = [];

  private constructor() {}

  /** Starts the prober; resolves once it has reported its first outcome. */
  static async start(tool: string, netns: string, ip: string, slot: number): Promise<Prober> {
    const p = new Prober();
    const child = spawn('ip', ['netns', 'exec', netns, tool, 'watch', ip, String(ECHO_BASE_PORT), String(ECHO_PORTS), String(PROBER_FIRST_INDEX * (slot + 1)), String(PROBE_TIMEOUT_US), String(PROBE_PACE_US)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const pid = child.pid!;
    onCleanup(`prober ${pid} in ${netns}`, () => killPid(pid));
    let buf = '';
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /"ns":(\d+),"allowed":(true|false)/.exec(line);
        if (m) p.events.push({ ns: BigInt(m[1]!), allowed: m[2] === 'true' });
        for (const w of p.waiters.splice(0)) w();
      }
    });
    await p.waitFor(() => p.events.length > 0, 10_000);
    return p;
  }

  /** The current outcome. */
  allowed(): boolean {
    return this.events.at(-1)?.allowed ?? false;
  }

  /** The first event with this outcome that started at or after `since` (CLOCK_MONOTONIC ns); rejects after timeoutMs. */
  async changeTo(allowed: boolean, since: bigint, timeoutMs: number): Promise<ProbeEvent> {
    const find = () => this.events.find((e) => e.allowed === allowed && e.ns >= since);
    await this.waitFor(() => find() !== undefined, timeoutMs);
    return find()!;
  }

  private async waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`prober: no expected outcome within ${timeoutMs} ms (events: ${JSON.stringify(this.events.slice(-3), (_, v) => (typeof v === 'bigint' ? String(v) : v))})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }
}

/**
 * `sluice local probe`: does a connection from one pod reach another? TCP and
 * UDP probes start a one-shot echo server in the target pod's namespace and
 * connect from the source pod's namespace; ICMP uses ping.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { datastoreOf, selfCommand, type ClusterConfig } from './cluster.ts';
import { containerPorts, parsePodRef } from './pods.ts';
import { run } from './run.ts';

/** What to probe. */
export interface ProbeSpec {
  from: string;
  to: string;
  protocol: 'tcp' | 'udp' | 'icmp';
  port: number;
  timeoutMs: number;
  /** Which of the target pod's addresses (default: its first). */
  family?: 4 | 6;
}

const PROBE_PAYLOAD = 'sluice-probe';

function podNetnsAndIp(config: ClusterConfig, ref: string, family?: 4 | 6): { netns: string; ip: string; serves: string[] } {
  const { namespace, name } = parsePodRef(ref);
  const pod = datastoreOf(config).get('Pod', name, namespace);
  if (!pod) throw new Error(`no pod ${namespace}/${name}`);
  const ips = ((pod.status?.podIPs ?? []) as { ip: string }[]).map((p) => p.ip);
  const ip = family ? ips.find((a) => (family === 6) === a.includes(':')) : ips[0];
  if (!ip) throw new Error(`pod ${namespace}/${name} has no ${family ? `IPv${family} ` : ''}address`);
  const serving = pod.metadata.annotations?.['sluice.dev/server-pid'] ? containerPorts(pod) : [];
  return {
    netns: pod.metadata.annotations!['sluice.dev/netns']!,
    ip,
    serves: serving.map((p) => `${p.containerPort}/${(p.protocol ?? 'TCP').toLowerCase()}`),
  };
}

/** Resolves true when the probe connects within the timeout. */
export async function probe(config: ClusterConfig, spec: ProbeSpec): Promise<boolean> {
  const from = podNetnsAndIp(config, spec.from);
  const to = net.isIP(spec.to) ? { netns: '', ip: spec.to, serves: [] as string[] } : podNetnsAndIp(config, spec.to, spec.family);
  const self = selfCommand();
  if (spec.protocol === 'icmp') {
    const waitS = String(Math.max(1, Math.ceil(spec.timeoutMs / 1000)));
    return run('ip', ['netns', 'exec', from.netns, 'ping', '-c', '1', '-W', waitS, to.ip]).then(() => true, () => false);
  }
  const args = ['netns', 'exec', from.netns, ...self, 'local', 'connect', to.ip, String(spec.port), '--protocol', spec.protocol, '--timeout-ms', String(spec.timeoutMs)];
  // A pod that serves the port (its container ports) answers by itself.
  if (to.serves.includes(`${spec.port}/${spec.protocol}`) || !to.netns) {
    return run('ip', args, spec.timeoutMs + 10_000).then(() => true, () => false);
  }
  const server = spawn('ip', ['netns', 'exec', to.netns, ...self, 'local', 'serve', '--protocol', spec.protocol, '--port', String(spec.port), '--once'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout.once('data', () => resolve());
      server.once('exit', (code) => reject(new Error(`echo server in ${spec.to} exited (${code}) before it was ready`)));
    });
    return await run('ip', args, spec.timeoutMs + 10_000).then(() => true, () => false);
  } finally {
    if (server.exitCode === null) server.kill('SIGKILL');
  }
}

/** Echo servers on every port of a list like "80/TCP,81/UDP" (a pod's container ports); runs until killed. */
export async function servePorts(list: string): Promise<void> {
  const specs = list.split(',').map((item) => {
    const [port, proto] = item.split('/') as [string, string | undefined];
    return { port: Number(port), protocol: (proto ?? 'TCP').toLowerCase() as 'tcp' | 'udp' };
  });
  await Promise.all(specs.map((s) => serve(s.protocol, s.port, false, false)));
}

/** Echo server for probes (runs inside the target netns): prints "ready" once listening. */
export async function serve(protocol: 'tcp' | 'udp', port: number, once: boolean, announce = true): Promise<void> {
  if (protocol === 'tcp') {
    const server = net.createServer((sock) => {
      sock.pipe(sock);
      sock.on('error', () => undefined);
      if (once) sock.on('close', () => server.close());
    });
    // '::' with dual-stack sockets serves IPv4 and IPv6 alike.
    await new Promise<void>((resolve) => server.listen(port, '::', resolve));
    if (announce) process.stdout.write('ready\n');
    await new Promise((resolve) => server.on('close', resolve));
    return;
  }
  const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  sock.on('message', (msg, rinfo) => {
    sock.send(msg, rinfo.port, rinfo.address, () => {
      if (once) sock.close();
    });
  });
  await new Promise<void>((resolve) => sock.bind(port, '::', resolve));
  if (announce) process.stdout.write('ready\n');
  await new Promise((resolve) => sock.on('close', resolve));
}

/**
 * Keeps one TCP connection open for holdMs, sending a message every intervalMs
 * and waiting for its echo; rejects when the connection breaks or an echo is
 * late by more than timeoutMs. Shows that a connection survives (e.g. an agent restart).
 */
export function holdConnection(ip: string, port: number, holdMs: number, intervalMs: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let echoes = 0;
    let pending = 0;
    let lastEcho = Date.now();
    const sock = net.connect({ host: ip, port });
    const fail = (err: Error) => {
      clearInterval(ticker);
      sock.destroy();
      reject(err);
    };
    const ticker = setInterval(() => {
      if (Date.now() - lastEcho > timeoutMs) return fail(new Error(`no echo for ${timeoutMs} ms after ${echoes} echoes`));
      if (pending === 0) {
        pending = 1;
        sock.write(PROBE_PAYLOAD);
      }
    }, intervalMs);
    setTimeout(() => {
      clearInterval(ticker);
      sock.end();
      resolve(echoes);
    }, holdMs);
    sock.on('data', () => {
      echoes++;
      pending = 0;
      lastEcho = Date.now();
    });
    sock.on('error', (err) => fail(err));
  });
}

/** Probe client (runs inside the source netns): resolves when the echo comes back, rejects on timeout. */
export function connect(ip: string, port: number, protocol: 'tcp' | 'udp', timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer from ${ip}:${port}/${protocol} within ${timeoutMs} ms`)), timeoutMs);
    const done = (err?: Error) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    if (protocol === 'tcp') {
      const sock = net.connect({ host: ip, port }, () => sock.write(PROBE_PAYLOAD));
      sock.on('data', () => {
        sock.end();
        done();
      });
      sock.on('error', (err) => done(err));
      return;
    }
    const sock = dgram.createSocket(ip.includes(':') ? 'udp6' : 'udp4');
    sock.on('message', () => {
      sock.close();
      done();
    });
    sock.on('error', (err) => done(err));
    sock.send(PROBE_PAYLOAD, port, ip);
  });
}

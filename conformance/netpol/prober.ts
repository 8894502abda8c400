/**
 * The in-pod prober: runs inside one pod's network namespace
 * (`ip netns exec <netns> node conformance/netpol/prober.ts`), reads probe
 * requests as JSON lines on stdin and answers each with one JSON line on
 * stdout, many probes at a time. A probe connects (TCP) or sends a datagram
 * (UDP) to a model pod's echo server and succeeds when the echo comes back.
 *
 * Each request names its source port, so every probe is a new 5-tuple: a
 * flow never reuses the address pair and ports of an earlier one, whose
 * conntrack entry could otherwise carry an old verdict over.
 *
 * request:  {"id": 7, "ip": "10.1.2.3", "port": 80, "protocol": "tcp", "timeoutMs": 1000, "sourcePort": 20001}
 * response: {"id": 7, "ok": true, "ms": 2}  or  {"id": 7, "ok": false, "ms": 1000, "error": "timeout"}
 *
 * Only Node built-ins: this file runs on its own, outside the suite's imports.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

const PAYLOAD = Buffer.from('sluice-netpol-probe');
const UDP_RESEND_INTERVAL_MS = 200;

interface ProbeRequest {
  id: number;
  ip: string;
  port: number;
  protocol: 'tcp' | 'udp';
  timeoutMs: number;
  sourcePort: number;
}

interface ProbeResult {
  ok: boolean;
  error?: string;
}

function errorText(err: unknown): string {
  return err instanceof Error ? ((err as NodeJS.ErrnoException).code ?? err.message) : String(err);
}

function probeTcp(req: ProbeRequest): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const sock = net.connect({ host: req.ip, port: req.port, localPort: req.sourcePort });
    const finish = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), req.timeoutMs);
    sock.on('connect', () => sock.write(PAYLOAD));
    sock.on('data', () => finish({ ok: true }));
    sock.on('error', (err) => finish({ ok: false, error: errorText(err) }));
    sock.on('close', () => finish({ ok: false, error: 'closed before the echo' }));
  });
}

function probeUdp(req: ProbeRequest): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    let resend: NodeJS.Timeout | undefined;
    const sock = dgram.createSocket('udp4');
    const finish = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(resend);
      sock.close();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), req.timeoutMs);
    const send = () => sock.send(PAYLOAD, req.port, req.ip, (err) => (err ? finish({ ok: false, error: errorText(err) }) : undefined));
    sock.on('message', () => finish({ ok: true }));
    sock.on('error', (err) => finish({ ok: false, error: errorText(err) }));
    sock.bind(req.sourcePort, () => {
      // A datagram may be lost on a busy machine: send again until the echo or the timeout.
      send();
      resend = setInterval(send, UDP_RESEND_INTERVAL_MS);
    });
  });
}

async function answer(line: string): Promise<void> {
  let req: ProbeRequest;
  try {
    req = JSON.parse(line) as ProbeRequest;
  } catch {
    process.stdout.write(JSON.stringify({ id: -1, ok: false, ms: 0, error: `bad request: ${line}` }) + '\n');
    return;
  }
  const started = performance.now();
  const result = await (req.protocol === 'udp' ? probeUdp(req) : probeTcp(req));
  process.stdout.write(JSON.stringify({ id: req.id, ...result, ms: Math.round(performance.now() - started) }) + '\n');
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim()) void answer(line);
});
// The suite closes stdin to stop the prober: it answers what is in flight, then exits by itself.
process.stdout.write(JSON.stringify({ ready: true }) + '\n');

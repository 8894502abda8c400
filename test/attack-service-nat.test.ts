/**
 * A hostile pod against the per-packet Service NAT (--socket-lb=off,
 * bpf/service-nat.h). Its lb_nat entries, two per translated flow, used to
 * be deleted only when a new flow was refused, not when the flow ended: a
 * pod churning short connections through a ClusterIP left them behind until
 * the table (an LRU) evicted the least recently used ones, which could be
 * another pod's idle connection: the backend's next packet on it was then
 * not translated back, and the connection broke. Now a flow's translation
 * leaves with its conntrack entry (a RST, the sweep), so the churn holds no
 * more of the table than its open flows, and the idle connection keeps
 * working.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfMap } from '../datapath/bpf-map.ts';
import { CT_MAX_PER_ENDPOINT, LB_NAT_KEY, LB_NAT_VALUE } from '../datapath/abi.ts';
import { TestCluster, must } from './support/local-cluster.ts';

const PYTHON = '/usr/bin/python3';
/** More distinct translated flows than the old LRU (262,144 entries, two per flow) could hold twice over. */
const CHURN_FLOWS = 300_000;
/** Service ports whose target ports nothing listens on: each SYN is answered by the backend's RST. */
const CLOSED_PORTS = [81, 82, 83, 84, 85];

/**
 * In the backend: port 9000 greets each connection and keeps it open; a
 * connection to 127.0.0.1:9100 (the pod's own loopback, not the datapath)
 * makes it send "push" on every connection it keeps, and answers how many.
 */
const HOLDING_SERVER = `
import socket, threading
held = []
def listener(addr, port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen(64); return s
t, ctl = listener('', 9000), listener('127.0.0.1', 9100)
def control():
    while True:
        c, _ = ctl.accept(); n = 0
        for h in held:
            try:
                h.sendall(b'push'); n += 1
            except OSError:
                pass
        c.sendall(str(n).encode()); c.close()
threading.Thread(target=control, daemon=True).start()
print('ready', flush=True)
while True:
    c, _ = t.accept(); c.recv(100); c.sendall(b'hello'); held.append(c)
`;

/** In the victim: one connection to vip:80, greeted, then idle until the server pushes (or 120 s pass). */
const IDLE_CLIENT = `
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=5); s.sendall(b'hi')
print(s.recv(100).decode(), flush=True)
s.settimeout(120)
try:
    print(s.recv(100).decode() or 'closed', flush=True)
except OSError as e:
    print('error ' + str(e), flush=True)
`;

/**
 * In the attacker: N TCP SYNs to vip, each a flow never seen before (source
 * ports 1024 up, across the given Service ports), from a raw socket; the
 * backend answers each with a RST, which ends the flow. Prints N.
 */
const CHURN = `
import socket, struct, sys
src, vip, n, ports = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(p) for p in sys.argv[4].split(',')]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
pseudo = sum(struct.unpack('!4H', socket.inet_aton(src) + socket.inet_aton(vip))) + socket.IPPROTO_TCP + 20
fixed = pseudo + (5 << 12 | 0x02) + 65535
per_port = n // len(ports) + 1
sent = 0
for dport in ports:
    for i in range(per_port):
        if sent == n:
            break
        sport = 1024 + i
        c = fixed + sport + dport + (i >> 16) + (i & 0xffff)
        c = (c & 0xffff) + (c >> 16); c = (c & 0xffff) + (c >> 16)
        s.sendto(struct.pack('!HHIIHHHH', sport, dport, i, 0, 5 << 12 | 0x02, 65535, ~c & 0xffff, 0), (vip, 0))
        sent += 1
print(sent)
`;

/**
 * In the attacker: from each of n new source ports (FIRST up), one UDP
 * datagram to vip at each of the given ports (nothing answers: the
 * backend's port is closed).
 */
const UDP_FLOWS = `
import socket, sys
vip, ports, n, first = sys.argv[1], [int(p) for p in sys.argv[2].split(',')], int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('', first + i))
    for port in ports:
        u.sendto(b'x', (vip, port))
    u.close()
print(n)
`;

describe('hostile pod: the per-packet Service NAT', () => {
  const cluster = new TestCluster();
  const serviceCidr = `10.154.${parseInt(cluster.id.slice(0, 2), 16)}.0/24`;
  const vip = serviceCidr.replace('.0/24', '.10');
  let ip: Record<string, string> = {};
  let netns: Record<string, string> = {};

  /** lb_nat entries whose key holds addr (as the source or the destination). */
  const natEntriesOf = (addr: string) => {
    const bytes = Buffer.from(addr.split('.').map(Number));
    const nat = BpfMap.openPinned(path.join(cluster.bpfDir, 'maps/lb_nat'), 'lb_nat', LB_NAT_KEY.size, LB_NAT_VALUE.size);
    try {
      return nat.keys().filter((k) => k.subarray(0, 4).equals(bytes) || k.subarray(16, 20).equals(bytes)).length;
    } finally {
      nat.close();
    }
  };

  beforeAll(async () => {
    // Unanswered flows idle out after 2 s and the sweep runs twice a second: the sweep's part is seen quickly.
    await cluster.up('--agent-arg=--socket-lb=off', `--agent-arg=--service-cidr=${serviceCidr}`, '--agent-arg=--ct-timeout-other-sec=2', '--agent-arg=--ct-sweep-interval-ms=500');
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: sn}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sn, name: backend, labels: {app: held}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sn, name: victim, labels: {role: victim}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sn, name: churner, labels: {role: churner}}
---
apiVersion: v1
kind: Service
metadata: {namespace: sn, name: held}
spec:
  clusterIP: ${vip}
  selector: {app: held}
  ports:
    - {name: held, port: 80, targetPort: 9000}
${CLOSED_PORTS.map((p) => `    - {name: closed-${p}, port: ${p}, targetPort: ${9000 + p - 80}}`).join('\n')}
    - {name: udp, port: 53, targetPort: 9053, protocol: UDP}
    - {name: udp-again, port: 54, targetPort: 9053, protocol: UDP}
`);
    ({ ip, netns } = await cluster.podAddresses());
    await new Promise<void>((resolve, reject) => {
      const child = cluster.spawn('ip', ['netns', 'exec', netns['sn/backend']!, PYTHON, '-c', HOLDING_SERVER]);
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`holding server exited (${code})`)));
    });
  }, 120_000);

  afterAll(() => cluster.teardown());

  /** Starts the victim's idle connection; resolves with the lines it prints (greeting first, then what arrived after the idle time). */
  const idleConnection = async () => {
    // The agent syncs the Services after its policy sync: retry until the ClusterIP is served.
    for (let attempt = 0; ; attempt++) {
      const child = cluster.spawn('ip', ['netns', 'exec', netns['sn/victim']!, PYTHON, '-c', IDLE_CLIENT, vip]);
      const lines: string[] = [];
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const greeted = await new Promise<boolean>((resolve) => {
        child.stdout!.setEncoding('utf8').on('data', (d: string) => {
          lines.push(...d.split('\n').filter(Boolean));
          if (lines[0] === 'hello') resolve(true);
        });
        child.once('exit', () => resolve(false));
      });
      if (greeted) return { lines, exited };
      if (attempt === 30) throw new Error('the ClusterIP was never served');
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  it("a pod churning 300,000 short connections through a ClusterIP does not break another pod's idle connection through it", async () => {
    const victim = await idleConnection();
    const dnatBefore = await cluster.counter('SERVICE_DNAT');

    const sent = await must('ip', ['netns', 'exec', netns['sn/churner']!, PYTHON, '-c', CHURN, ip['sn/churner']!, vip, String(CHURN_FLOWS), CLOSED_PORTS.join(',')]);
    expect(Number(sent.trim())).toBe(CHURN_FLOWS);
    // (A few may never reach from-pod: the veth's backlog queue can drop them first.)
    expect((await cluster.counter('SERVICE_DNAT')) - dnatBefore).toBeGreaterThan(0.9 * CHURN_FLOWS);

    // The backend speaks first on the idle connection: its packet must be translated back to the ClusterIP.
    const pushed = await must('ip', ['netns', 'exec', netns['sn/backend']!, PYTHON, '-c', "import socket; s = socket.create_connection(('127.0.0.1', 9100)); print(s.recv(10).decode())"]);
    expect(Number(pushed.trim())).toBe(1);
    await victim.exited;
    expect(victim.lines).toEqual(['hello', 'push']);
    // The churn's flows ended (each with the backend's RST), and their translations with them:
    // it holds no more of the table than a pod's open flows could.
    expect(natEntriesOf(ip['sn/churner']!)).toBeLessThanOrEqual(2 * CT_MAX_PER_ENDPOINT);
  }, 300_000);

  /** lb_nat entries of the churner once its unanswered flows have idled out (2 s) and the sweep has run, or after 30 s. */
  const natEntriesLeft = async () => {
    const deadline = Date.now() + 30_000;
    let left = natEntriesOf(ip['sn/churner']!);
    while (left > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      left = natEntriesOf(ip['sn/churner']!);
    }
    return left;
  };

  it('a flow the sweep removes takes its translation with it', async () => {
    const flows = 2000;
    expect(Number(await must('ip', ['netns', 'exec', netns['sn/churner']!, PYTHON, '-c', UDP_FLOWS, vip, '53', String(flows), '30000']))).toBe(flows);
    expect(await natEntriesLeft()).toBe(0);
  }, 60_000);

  it('a source port sent through two frontends of one backend leaves no translation behind either', async () => {
    // Both frontends translate to the same backend port: one flow, one reply entry, which can name only
    // one frontend. The other frontend's original entry, left behind, would never leave with the flow.
    const flows = 2000;
    expect(Number(await must('ip', ['netns', 'exec', netns['sn/churner']!, PYTHON, '-c', UDP_FLOWS, vip, '53,54', String(flows), '33000']))).toBe(flows);
    expect(await natEntriesLeft()).toBe(0);
  }, 60_000);
});

/**
 * ClusterIP Services translated per packet in from-pod (bpf/service-nat.h),
 * on a local cluster whose agent runs with --socket-lb=off: the socket hooks
 * are not attached, so every packet a client pod sends carries the Service
 * address and only the datapath can send it to a backend. Two backend pods
 * on this node, TCP and UDP, IPv4 and IPv6: connections reach both
 * backends, the client sees the ClusterIP as its peer (getpeername, recvfrom),
 * egress policy judges the backend, a Service without endpoints is refused
 * at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, must } from './support/local-cluster.ts';
import { formatIp, parseIp } from '../lib/ip-bytes.ts';
import { BpfMap } from '../datapath/bpf-map.ts';
import { LB_NAT_KEY, LB_NAT_VALUE } from '../datapath/abi.ts';

const PYTHON = '/usr/bin/python3';
const CONNECTS = 30;

/** In a backend pod: a TCP server that sends its name and closes, and a UDP server that answers its name. */
const NAME_SERVER = `
import socket, sys, threading
name, port = sys.argv[1].encode(), int(sys.argv[2])
def dual(kind):
    s = socket.socket(socket.AF_INET6, kind); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('::', port)); return s
u = dual(socket.SOCK_DGRAM)
def udp():
    while True:
        d, a = u.recvfrom(100); u.sendto(name, a)
threading.Thread(target=udp, daemon=True).start()
t = dual(socket.SOCK_STREAM); t.listen(64)
print('ready', flush=True)
while True:
    c, _ = t.accept(); c.sendall(name); c.close()
`;

/** In the client pod: N connects and N datagrams to vip; what answered, and what getpeername and recvfrom said. */
const CLIENT = `
import socket, sys, json, collections
vip, n = sys.argv[1], int(sys.argv[2])
out = {'tcp': collections.Counter(), 'peers': [], 'udp': collections.Counter(), 'sources': [], 'errors': []}
fam = socket.AF_INET6 if ':' in vip else socket.AF_INET
for i in range(n):
    try:
        s = socket.create_connection((vip, 80), timeout=1)
        out['peers'].append('%s:%d' % s.getpeername()[:2])
        out['tcp'][s.recv(100).decode()] += 1
        s.close()
    except OSError as e:
        out['errors'].append('tcp ' + str(e))
    u = socket.socket(fam, socket.SOCK_DGRAM); u.settimeout(1)
    try:
        u.sendto(b'?', (vip, 53)); d, a = u.recvfrom(100)
        out['udp'][d.decode()] += 1; out['sources'].append('%s:%d' % a[:2])
    except OSError as e:
        out['errors'].append('udp ' + str(e))
    u.close()
out['peers'] = sorted(set(out['peers'])); out['sources'] = sorted(set(out['sources']))
print(json.dumps(out))
`;

/** In a pod: one connect to addr:port; the errno name (or 'connected') and how long it took. */
const CONNECT_ONCE = `
import socket, sys, time, errno, json
t = time.monotonic()
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])); r = s.recv(100).decode()
    res = 'connected' if r else 'closed'
except socket.timeout:
    res = 'timeout'
except OSError as e:
    res = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({'result': res, 'ms': (time.monotonic() - t) * 1000}))
`;

/** In a pod: a connected UDP socket to addr:port sends once and waits for an answer; the errno name (or 'answered') and how long it took. */
const UDP_ONCE = `
import socket, sys, time, errno, json
t = time.monotonic()
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); s.send(b'?'); s.recv(100); res = 'answered'
except socket.timeout:
    res = 'timeout'
except OSError as e:
    res = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({'result': res, 'ms': (time.monotonic() - t) * 1000}))
`;

describe('ClusterIP Services by per-packet DNAT in from-pod (--socket-lb=off)', () => {
  const cluster = new TestCluster();
  const serviceCidr = `10.151.${parseInt(cluster.id.slice(0, 2), 16)}.0/24`;
  const vip = serviceCidr.replace('.0/24', '.10');
  const emptyIP = serviceCidr.replace('.0/24', '.200');
  const stickyVip = serviceCidr.replace('.0/24', '.11');
  const serviceCidr6 = `fd00:152:${cluster.id.slice(0, 4)}::/112`;
  const vip6 = formatIp(parseIp(`fd00:152:${cluster.id.slice(0, 4)}::10`).bytes);
  const emptyIP6 = formatIp(parseIp(`fd00:152:${cluster.id.slice(0, 4)}::200`).bytes);
  let netns: Record<string, string> = {};

  const inPod = async (pod: string, script: string, ...args: string[]) => JSON.parse(await must('ip', ['netns', 'exec', netns[pod]!, PYTHON, '-c', script, ...args]));

  beforeAll(async () => {
    await cluster.up(
      '--pod-cidr', `fd00:153:${cluster.id.slice(0, 4)}::/120`,
      '--agent-arg=--socket-lb=off', `--agent-arg=--service-cidr=${serviceCidr}`, `--agent-arg=--service-cidr=${serviceCidr6}`,
    );
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: sv}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sv, name: b1, labels: {app: echo}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sv, name: b2, labels: {app: echo}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sv, name: client, labels: {role: client}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sv, name: denied, labels: {role: denied}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sv, name: limited, labels: {role: limited}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: sv, name: denied-only-to-service-addresses}
spec:
  podSelector: {matchLabels: {role: denied}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: ${serviceCidr}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: sv, name: limited-to-the-backends}
spec:
  podSelector: {matchLabels: {role: limited}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: echo}}}], ports: [{protocol: TCP, port: 9000}]}]
---
apiVersion: v1
kind: Service
metadata: {namespace: sv, name: echo}
spec:
  clusterIP: ${vip}
  selector: {app: echo}
  ports:
    - {name: name-tcp, port: 80, targetPort: 9000, protocol: TCP}
    - {name: name-udp, port: 53, targetPort: 9000, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {namespace: sv, name: sticky}
spec:
  clusterIP: ${stickyVip}
  selector: {app: echo}
  sessionAffinity: ClientIP
  ports: [{name: name-tcp, port: 80, targetPort: 9000}, {name: name-udp, port: 53, targetPort: 9000, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {namespace: sv, name: echo6}
spec:
  clusterIP: ${vip6}
  selector: {app: echo}
  ports:
    - {name: name-tcp, port: 80, targetPort: 9000, protocol: TCP}
    - {name: name-udp, port: 53, targetPort: 9000, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {namespace: sv, name: empty}
spec:
  clusterIP: ${emptyIP}
  selector: {app: nothing}
  ports: [{name: t, port: 80}, {name: u, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {namespace: sv, name: empty6}
spec:
  clusterIP: ${emptyIP6}
  selector: {app: nothing}
  ports: [{name: t, port: 80}, {name: u, port: 53, protocol: UDP}]
`);
    netns = (await cluster.podAddresses()).netns;
    await Promise.all(
      ['sv/b1', 'sv/b2'].map(
        (pod) =>
          new Promise<void>((resolve, reject) => {
            const child = cluster.spawn('ip', ['netns', 'exec', netns[pod]!, PYTHON, '-c', NAME_SERVER, pod, '9000']);
            child.stdout!.once('data', () => resolve());
            child.once('exit', (code) => reject(new Error(`name server in ${pod} exited (${code})`)));
          }),
      ),
    );
    // The agent syncs the Services after its policy sync: wait until the datapath serves them.
    const deadline = Date.now() + 30_000;
    while ((await inPod('sv/client', CONNECT_ONCE, vip, '80', '1')).result !== 'connected') {
      if (Date.now() > deadline) throw new Error('the ClusterIP was never served');
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 120_000);

  afterAll(async () => {
    await cluster.teardown();
  });

  it('the agent attached no socket hooks: Service traffic is the datapath’s', async () => {
    const out = JSON.parse(await must('dist/sluice', ['service', 'list', '-o', 'json', '--socket', cluster.socket])) as { reason?: string };
    expect(out.reason).toMatch(/--socket-lb off: Services translated per packet in from-pod/);
    expect(await cluster.counter('SERVICE_DNAT')).toBeGreaterThan(0);
  });

  for (const family of ['IPv4', 'IPv6'] as const) {
    it(`${family}: TCP and UDP reach both backends; the client sees the ClusterIP as its peer`, async () => {
      const addr = family === 'IPv4' ? vip : vip6;
      const revnatBefore = await cluster.counter('SERVICE_REVNAT');
      const out = await inPod('sv/client', CLIENT, addr, String(CONNECTS));
      expect(out.errors).toEqual([]);
      expect(Object.keys(out.tcp).sort()).toEqual(['sv/b1', 'sv/b2']);
      expect(Object.keys(out.udp).sort()).toEqual(['sv/b1', 'sv/b2']);
      expect(out.peers).toEqual([`${addr}:80`]);
      expect(out.sources).toEqual([`${addr}:53`]);
      expect(await cluster.counter('SERVICE_REVNAT')).toBeGreaterThan(revnatBefore);
    }, 120_000);
  }

  it('sessionAffinity: ClientIP keeps a client on one backend, TCP and UDP', async () => {
    const out = await inPod('sv/client', CLIENT, stickyVip, '20');
    expect(out.errors).toEqual([]);
    expect(Object.values(out.tcp)).toEqual([20]);
    expect(Object.values(out.udp)).toEqual([20]);
    expect(out.peers).toEqual([`${stickyVip}:80`]);
  }, 60_000);

  it('egress policy judges the backend, not the Service address', async () => {
    // Allowed to the backends' port 9000 only: through the ClusterIP's port 80 it reaches them.
    expect(await inPod('sv/limited', CONNECT_ONCE, vip, '80', '1')).toMatchObject({ result: 'connected' });
    // Allowed only to the Service CIDR: the backends are not in it.
    expect(await inPod('sv/denied', CONNECT_ONCE, vip, '80', '1')).toMatchObject({ result: 'timeout' });
    // ... and the refused flow left no translation behind (NAT entries live only as long as flows let in).
    const denied = Buffer.from((await cluster.podAddresses()).ip['sv/denied']!.split('.').map(Number));
    const nat = BpfMap.openPinned(`${cluster.bpfDir}/maps/lb_nat`, 'lb_nat', LB_NAT_KEY.size, LB_NAT_VALUE.size);
    try {
      const keys = nat.keys();
      expect(keys.length).toBeGreaterThan(0);
      expect(keys.filter((k) => k.subarray(0, 4).equals(denied) || k.subarray(16, 20).equals(denied))).toEqual([]);
    } finally {
      nat.close();
    }
  }, 30_000);

  for (const family of ['IPv4', 'IPv6'] as const) {
    it(`${family}: a Service without endpoints is refused at once (ECONNREFUSED), TCP and UDP`, async () => {
      const refusedBefore = await cluster.counter('SERVICE_REFUSED');
      const out = await inPod('sv/client', CONNECT_ONCE, family === 'IPv4' ? emptyIP : emptyIP6, '80', '5');
      expect(out.result).toBe('ECONNREFUSED');
      expect(out.ms).toBeLessThan(1000);
      expect(await cluster.counter('SERVICE_REFUSED')).toBeGreaterThan(refusedBefore);
      // UDP: an ICMP port unreachable, which a connected socket reports on its next receive.
      const udp = await inPod('sv/client', UDP_ONCE, family === 'IPv4' ? emptyIP : emptyIP6, '53', '5');
      expect(udp.result).toBe('ECONNREFUSED');
      expect(udp.ms).toBeLessThan(1000);
    }, 30_000);
  }
});

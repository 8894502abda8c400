/**
 * ClusterIP Services through the socket load balancer, on a local cluster:
 * two backend pods, a client pod, and Services applied with `sluice local
 * apply`. The load balancer is loaded and synced here through
 * agent/services/start.ts against the cluster's own pins and datastore (the
 * same calls the agent makes once wired; if the agent already loaded it,
 * this adopts the pins and writes the same table).
 *
 * The hooks sit at the root of the cgroup v2 hierarchy: they see every
 * socket of the machine, so this test's Service CIDR is its own.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster, must, sh } from './support/local-cluster.ts';
import { LocalDirDatastore } from '../agent/datastore/datastore.ts';
import { serviceInputsOf, startServices, type Services } from '../agent/services/start.ts';
import { ServiceMapSync } from '../agent/services/sync.ts';
import { serviceTable, withNodePorts } from '../agent/services/table.ts';
import { loadServiceLb, serviceLbObjectBytes } from '../datapath/service-lb-loader.ts';
import { cgroup2Root } from '../datapath/trace-loader.ts';
import { hostAddresses } from '../agent/routing/host-addresses.ts';
import { formatIp, parseIp } from '../lib/ip-bytes.ts';

const PYTHON = '/usr/bin/python3';
const CONNECTS = 40;

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
for i in range(n):
    try:
        s = socket.create_connection((vip, 80), timeout=1)
        out['peers'].append('%s:%d' % s.getpeername()[:2])
        out['tcp'][s.recv(100).decode()] += 1
        s.close()
    except OSError as e:
        out['errors'].append('tcp ' + str(e))
    u = socket.socket(socket.AF_INET6 if ':' in vip else socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(1)
    try:
        u.sendto(b'?', (vip, 53)); d, a = u.recvfrom(100)
        out['udp'][d.decode()] += 1; out['sources'].append('%s:%d' % a[:2])
    except OSError as e:
        out['errors'].append('udp ' + str(e))
    u.close()
out['peers'] = sorted(set(out['peers'])); out['sources'] = sorted(set(out['sources']))
print(json.dumps(out))
`;

/** In the client pod: a connected UDP socket whose backend is argv[2]; once argv[3] exists, what using it gives. */
const HELD_UDP = `
import socket, sys, os, time, errno
vip, want, go = sys.argv[1], sys.argv[2], sys.argv[3]
for i in range(200):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.connect((vip, 53)); s.send(b'?')
    if s.recv(100).decode() == want: break
    s.close()
print('ready', flush=True)
while not os.path.exists(go): time.sleep(0.05)
try:
    s.send(b'?'); print('answer ' + s.recv(100).decode(), flush=True)
except socket.timeout:
    print('timeout', flush=True)
except OSError as e:
    print('error ' + errno.errorcode.get(e.errno, str(e.errno)), flush=True)
`;

/** In a pod: one connect to addr:port; the errno name (or 'connected') and how long it took. */
const CONNECT_ONCE = `
import socket, sys, time, errno, json
t = time.monotonic()
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])); s.sendall(b'ping'); r = s.recv(10).decode()
    res = 'connected' if r else 'closed'
except socket.timeout:
    res = 'timeout'
except OSError as e:
    res = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({'result': res, 'ms': (time.monotonic() - t) * 1000}))
`;

describe('ClusterIP Services by the socket load balancer', () => {
  const cluster = new TestCluster();
  const serviceCidr = `10.150.${parseInt(cluster.id.slice(0, 2), 16)}.0/24`;
  const emptyIP = serviceCidr.replace('.0/24', '.200');
  const serviceCidr6 = `fd00:150:${cluster.id.slice(0, 4)}::/112`;
  // Canonical (RFC 5952) text, as the agent reports addresses: the id may start with a 0.
  const vip6 = formatIp(parseIp(`fd00:150:${cluster.id.slice(0, 4)}::10`).bytes);
  let services: Services | null = null;
  let datastore: LocalDirDatastore;
  let netns: Record<string, string> = {};
  let vip = '';
  let stickyVip = '';
  let hostAddress = '';

  /** What `sluice local apply` just stored, into the maps (what the agent does after its policy sync). */
  const sync = () => {
    datastore.refresh();
    const stats = services!.sync();
    expect(stats?.failed ?? ['no load balancer']).toEqual([]);
  };
  const until = async (cond: () => boolean, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const inPod = async (pod: string, script: string, ...args: string[]) => JSON.parse(await must('ip', ['netns', 'exec', netns[pod]!, PYTHON, '-c', script, ...args]));

  beforeAll(async () => {
    await cluster.up('--pod-cidr', `fd00:151:${cluster.id.slice(0, 4)}::/120`, `--agent-arg=--service-cidr=${serviceCidr}`, `--agent-arg=--service-cidr=${serviceCidr6}`);
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: sv}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sv, name: b1, labels: {app: echo}}
spec: {containers: [{name: c, ports: [{name: echo, containerPort: 7070, protocol: TCP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: sv, name: b2, labels: {app: echo}}
spec: {containers: [{name: c, ports: [{name: echo, containerPort: 7070, protocol: TCP}]}]}
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
  selector: {app: echo}
  ports:
    - {name: name-tcp, port: 80, targetPort: 9000, protocol: TCP}
    - {name: name-udp, port: 53, targetPort: 9000, protocol: UDP}
    - {name: echo, port: 7, targetPort: echo}
---
apiVersion: v1
kind: Service
metadata: {namespace: sv, name: empty}
spec:
  clusterIP: ${emptyIP}
  selector: {app: nothing}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {namespace: sv, name: sticky}
spec:
  selector: {app: echo}
  sessionAffinity: ClientIP
  ports: [{name: name-tcp, port: 80, targetPort: 9000}, {name: name-udp, port: 53, targetPort: 9000, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {namespace: sv, name: np}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{port: 80, targetPort: 9000}]
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
    // This node's addresses, as the agent passes policy.hostAddresses(): the agent syncs the same maps from the
    // same datastore, so both writers must write the same table.
    const nodeAddresses = await hostAddresses();
    const addrs = JSON.parse(await must('ip', ['-j', '-4', 'addr', 'show', 'scope', 'global'])) as { addr_info: { local: string }[] }[];
    hostAddress = addrs.flatMap((l) => l.addr_info.map((a) => a.local))[0]!;
    datastore = new LocalDirDatastore(path.join(cluster.dir, 'datastore'));
    services = startServices({
      enabled: true,
      pinDir: path.join(cluster.bpfDir, 'service-lb'),
      objectBytes: serviceLbObjectBytes,
      cgroupRoot: cgroup2Root(),
      datastore,
      log: () => undefined,
      nodeAddresses: () => nodeAddresses,
      podNetns: () => Object.values(netns).map((n) => `/var/run/netns/${n}`),
    });
    expect(services.report().reason).toBeUndefined();
    sync();
  }, 120_000);

  afterAll(async () => {
    services?.close();
    // The links are pinned under the cluster's bpf dir: teardown removes them, which detaches the hooks.
    await cluster.teardown();
  });

  it('allocates the ClusterIP from the service CIDR and lists it with `local get services`; keeps a given one', async () => {
    const list = JSON.parse((await cluster.local('get', 'services', '-o', 'json')).stdout) as { items: { metadata: { name: string }; spec: { clusterIP: string; ports: { port: number; targetPort: unknown }[] } }[] };
    const byName = Object.fromEntries(list.items.map((s) => [s.metadata.name, s.spec]));
    vip = byName.echo!.clusterIP;
    stickyVip = byName.sticky!.clusterIP;
    expect(vip).toBe(serviceCidr.replace('.0/24', '.1'));
    expect(stickyVip).toBe(serviceCidr.replace('.0/24', '.2'));
    expect(byName.empty!.clusterIP).toBe(emptyIP);
    expect(byName.echo!.ports.map((p) => p.targetPort)).toEqual([9000, 9000, 'echo']);
  });

  it('spreads TCP connects over both backends; getpeername and UDP recvfrom show the ClusterIP', async () => {
    const out = await inPod('sv/client', CLIENT, vip, String(CONNECTS));
    expect(out.errors).toEqual([]);
    expect(Object.keys(out.tcp).sort()).toEqual(['sv/b1', 'sv/b2']);
    expect(Object.keys(out.udp).sort()).toEqual(['sv/b1', 'sv/b2']);
    // Random choice: each backend gets a fair share (P(one gets < 5 of 40) is ~1e-7).
    for (const n of [...Object.values(out.tcp), ...Object.values(out.udp)] as number[]) expect(n).toBeGreaterThanOrEqual(5);
    expect(out.peers).toEqual([`${vip}:80`]);
    expect(out.sources).toEqual([`${vip}:53`]);
    // The counts per backend that `sluice service list` shows.
    const tcp = services!.report().frontends.find((f) => f.address === vip && f.port === 80)!;
    expect(tcp.backends.map((b) => b.state)).toEqual(['ready', 'ready']);
    expect(tcp.backends.reduce((sum, b) => sum + b.newFlows, 0)).toBe(CONNECTS);
  });

  it('hairpin: a backend reaching its own Service lands on itself as often as on the other', async () => {
    const out = await inPod('sv/b1', CLIENT, vip, '20');
    expect(out.errors).toEqual([]);
    expect(Object.keys(out.tcp).sort()).toEqual(['sv/b1', 'sv/b2']);
    expect(out.peers).toEqual([`${vip}:80`]);
  });

  it('does the same over IPv6: connect6, getpeername6, sendmsg6 and recvmsg6', async () => {
    const out = await inPod('sv/client', CLIENT, vip6, '20');
    expect(out.errors).toEqual([]);
    expect(Object.keys(out.tcp).sort()).toEqual(['sv/b1', 'sv/b2']);
    expect(Object.keys(out.udp).sort()).toEqual(['sv/b1', 'sv/b2']);
    expect(out.peers).toEqual([`${vip6}:80`]);
    expect(out.sources).toEqual([`${vip6}:53`]);
  });

  it('keeps a client on one backend with sessionAffinity: ClientIP', async () => {
    const out = await inPod('sv/client', CLIENT, stickyVip, '20');
    expect(out.errors).toEqual([]);
    expect(Object.values(out.tcp)).toEqual([20]);
    // Per Service port, as kube-proxy keeps it: the UDP port may stick to the other backend.
    expect(Object.values(out.udp)).toEqual([20]);
  });

  it('serves a NodePort on the node address to pods and to the host', async () => {
    const list = JSON.parse((await cluster.local('get', 'services', '-o', 'json')).stdout) as { items: { metadata: { name: string }; spec: { ports: { nodePort?: number }[] } }[] };
    const nodePort = list.items.find((s) => s.metadata.name === 'np')!.spec.ports[0]!.nodePort!;
    expect(nodePort).toBeGreaterThanOrEqual(30000);
    expect(await inPod('sv/client', CONNECT_ONCE, hostAddress, String(nodePort), '1')).toMatchObject({ result: 'connected' });
    expect(JSON.parse(await must(PYTHON, ['-c', CONNECT_ONCE, hostAddress, String(nodePort), '1']))).toMatchObject({ result: 'connected' });
  });

  it('resolves a named targetPort to the pod container port (the echo server of `local serve`)', async () => {
    expect(await inPod('sv/client', CONNECT_ONCE, vip, '7', '2')).toMatchObject({ result: 'connected' });
  });

  it('refuses a Service without endpoints at once (ECONNREFUSED), with no timeout', async () => {
    const out = await inPod('sv/client', CONNECT_ONCE, emptyIP, '80', '5');
    expect(out.result).toBe('ECONNREFUSED');
    expect(out.ms).toBeLessThan(1000);
  });

  it('leaves egress policy to judge the backend, not the Service address', async () => {
    // Allowed only to the Service CIDR: the backends behind it stay out of reach.
    const drops = await cluster.counter('DROP_POLICY_EGRESS');
    expect(await inPod('sv/denied', CONNECT_ONCE, vip, '80', '1')).toMatchObject({ result: 'timeout' });
    expect(await cluster.counter('DROP_POLICY_EGRESS')).toBeGreaterThan(drops);
    // Allowed only to the backend pods on the target port: the ClusterIP reaches them.
    expect(await inPod('sv/limited', CONNECT_ONCE, vip, '80', '1')).toMatchObject({ result: 'connected' });
    // ... and only on that port: the Service's other port (echo, 7070 behind it) is denied.
    expect(await inPod('sv/limited', CONNECT_ONCE, vip, '7', '1')).toMatchObject({ result: 'timeout' });
  });

  it('stops choosing a backend whose pod is gone, and destroys the UDP sockets connected to it', async () => {
    const go = path.join(cluster.dir, 'held-udp-go');
    const held = cluster.spawn('ip', ['netns', 'exec', netns['sv/client']!, PYTHON, '-c', HELD_UDP, vip, 'sv/b2', go]);
    let heldOut = '';
    held.stdout!.on('data', (d: Buffer) => (heldOut += d.toString()));
    const exited = new Promise((resolve) => held.once('exit', resolve));
    await until(() => heldOut.includes('ready'));
    await cluster.delete(`
apiVersion: v1
kind: Pod
metadata: {namespace: sv, name: b2}
`);
    sync();
    await services!.settled();
    fs.writeFileSync(go, '');
    await exited;
    // Not a silent timeout: the owner learns at once that its socket is gone (and opens a new one).
    expect(heldOut.trim().split('\n').at(-1)).toMatch(/^error E/);
    const out = await inPod('sv/client', CLIENT, vip, '20');
    expect(out.tcp).toEqual({ 'sv/b1': 20 });
    expect(out.udp).toEqual({ 'sv/b1': 20 });
    expect(services!.report().frontends.find((f) => f.address === vip && f.port === 80)!.backends.map((b) => b.pod)).toEqual(['sv/b1']);
  });

  it('pins one link per hook under <bpf-dir>/service-lb; a restarted agent adopts them, attaching nothing twice and writing nothing', async () => {
    const links = await sh('ls', [path.join(cluster.bpfDir, 'service-lb', 'links')]);
    expect(links.stdout.trim().split('\n').sort()).toEqual(['connect4', 'connect6', 'getpeername4', 'getpeername6', 'recvmsg4', 'recvmsg6', 'sendmsg4', 'sendmsg6']);
    const again = loadServiceLb({ pinDir: path.join(cluster.bpfDir, 'service-lb'), objectBytes: serviceLbObjectBytes(), cgroupRoot: cgroup2Root()! });
    try {
      expect(again).toMatchObject({ adopted: true, attached: [] });
      expect(again.links).toHaveLength(8);
      datastore.refresh();
      const stats = new ServiceMapSync(again.maps).apply(withNodePorts(serviceTable(serviceInputsOf(datastore)), await hostAddresses()));
      expect(stats).toMatchObject({ written: 0, deleted: 0, failed: [] });
    } finally {
      again.close();
    }
    // Still served by the adopted programs.
    expect(await inPod('sv/client', CONNECT_ONCE, vip, '80', '1')).toMatchObject({ result: 'connected' });
  });
});

// The datapath against the real kernel: load and adopt pinned state, map access, TCX attach, and
// packets between two network-namespace "pods" delivered by from_pod. Runs as root. Every name
// (netns, links, pin dir) carries a random tag, and everything is removed even when a test fails.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withMakefileBuild } from './support/bpf-build.ts';
import { decodeEndpointInfo, encodeEndpointInfo, encodeEndpointKey, encodeU32, type EndpointInfo } from '../datapath/abi.ts';
import { BPF_NOEXIST } from '../datapath/bpf-map.ts';
import { ensureBpffs } from '../datapath/bpffs.ts';
import { isBpfError } from '../datapath/libbpf.ts';
import { loadDatapath, removeDatapath, type Datapath } from '../datapath/loader.ts';
import { attachTcx, detachTcx, tcxLinkAttached } from '../datapath/tcx.ts';

const BPFFS = '/sys/fs/bpf';
const TAG = randomBytes(3).toString('hex');
const PIN_DIR = join(BPFFS, `sluice-test-${TAG}`);
/** 10.250.<subnet>.0/24 for this run's pods; only reachable inside their namespaces. */
const SUBNET = randomBytes(1)[0]!;
const GATEWAY = '169.254.1.1';
const TCP_PORT = 8080;
const PING_COUNT = 3;
const PING_TIMEOUT_S = 1;
const SERVER_READY_TIMEOUT_MS = 10_000;

/** Sends ICMP echo requests from a raw socket (no ping binary needed); exits 0 if all were answered. */
const PING_PY = `
import os, socket, struct, sys, time
dst, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident, got = os.getpid() & 0xffff, 0
for seq in range(count):
    body = b'sluice-test-ping'
    hdr = struct.pack('!BBHHH', 8, 0, 0, ident, seq)
    sock.sendto(struct.pack('!BBHHH', 8, 0, csum(hdr + body), ident, seq) + body, (dst, 0))
    deadline = time.time() + timeout
    while time.time() < deadline:
        sock.settimeout(max(deadline - time.time(), 0.01))
        try:
            pkt, _ = sock.recvfrom(2048)
        except socket.timeout:
            break
        ihl = (pkt[0] & 0x0f) * 4
        typ, _, _, rid, rseq = struct.unpack('!BBHHH', pkt[ihl:ihl + 8])
        if typ == 0 and rid == ident and rseq == seq:
            got += 1
            break
print(got)
sys.exit(0 if got == count else 1)
`;

/** A TCP server that answers "pong:<what it read>" and prints "ready" once listening. */
const TCP_SERVER_JS = `
const [host, port] = process.argv.slice(-2);
require('node:net').createServer((s) => s.once('data', (d) => s.end('pong:' + d)))
  .listen(Number(port), host, () => console.log('ready'));
`;

/** Connects, sends "ping", prints the reply. */
const TCP_CLIENT_JS = `
const [host, port] = process.argv.slice(-2);
const s = require('node:net').connect(Number(port), host, () => s.write('ping'));
let out = '';
s.on('data', (d) => (out += d)).on('end', () => { console.log(out); process.exit(0); });
s.on('error', (e) => { console.error(e.message); process.exit(1); });
setTimeout(() => { console.error('timeout'); process.exit(2); }, 5000).unref();
`;

interface Pod {
  netns: string;
  hostIf: string;
  ip: string;
  hostIfindex: number;
  mac: string;
  hostMac: string;
  info: EndpointInfo;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs every cleanup step even if earlier ones fail; rethrows the first error at the end. */
function cleanupAll(steps: (() => void)[]): void {
  let first: unknown;
  for (const step of steps) {
    try {
      step();
    } catch (err: unknown) {
      first ??= err;
    }
  }
  if (first !== undefined) throw first;
}

function linkInfo(args: string[]): { ifindex: number; address: string } {
  const [link] = JSON.parse(run('ip', ['-j', ...args])) as { ifindex: number; address: string }[];
  return link!;
}

/** Every pod this file started to create, for cleanup. */
const podNames: { netns: string; hostIf: string }[] = [];

/** A pod: its own netns with eth0 (/32 address, default route via the link-local gateway) and a host veth. */
function createPod(name: string, ip: string, endpointId: number): Pod {
  const netns = `sl-${TAG}-${name}`;
  const hostIf = `sl${TAG}${name}`;
  // Recorded before anything exists, so a half-built pod is cleaned up too.
  podNames.push({ netns, hostIf });
  run('ip', ['netns', 'add', netns]);
  run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', `${hostIf}p`, 'netns', netns]);
  run('ip', ['-n', netns, 'link', 'set', `${hostIf}p`, 'name', 'eth0']);
  run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  run('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
  run('ip', ['-n', netns, 'addr', 'add', `${ip}/32`, 'dev', 'eth0']);
  run('ip', ['-n', netns, 'route', 'add', GATEWAY, 'dev', 'eth0', 'scope', 'link']);
  run('ip', ['-n', netns, 'route', 'add', 'default', 'via', GATEWAY, 'dev', 'eth0']);
  run('ip', ['link', 'set', hostIf, 'up']);
  const host = linkInfo(['link', 'show', 'dev', hostIf]);
  const pod = linkInfo(['-n', netns, 'link', 'show', 'dev', 'eth0']);
  const info: EndpointInfo = {
    ifindex: host.ifindex,
    endpointId,
    identity: 0,
    flags: 0,
    policyRev: 0,
    mac: pod.address,
    hostMac: host.address,
    ipv4: ip,
    ipv6: null,
  };
  return { netns, hostIf, ip, hostIfindex: host.ifindex, mac: pod.address, hostMac: host.address, info };
}

/** Deletes a pod's host veth (and with it the pair) and its netns, whichever exist. */
function deletePod(names: { netns: string; hostIf: string }): void {
  cleanupAll([
    // Deleting the host end removes the pair at once; a netns deletion tears its links down later.
    () => existsSync(`/sys/class/net/${names.hostIf}`) && run('ip', ['link', 'del', names.hostIf]),
    () => existsSync(`/run/netns/${names.netns}`) && run('ip', ['netns', 'del', names.netns]),
  ]);
}

function registerPod(dp: Datapath, pod: Pod): void {
  const value = encodeEndpointInfo(pod.info);
  dp.maps.devices.update(encodeU32(pod.hostIfindex), value);
  dp.maps.endpoints.update(encodeEndpointKey({ family: 4, address: pod.ip }), value);
}

function linkPin(dp: Datapath, pod: Pod, direction: 'ingress' | 'egress'): string {
  return join(dp.linksDir, `${pod.hostIf}-${direction}`);
}

function attachPod(dp: Datapath, pod: Pod): void {
  attachTcx({ ifindex: pod.hostIfindex, progPinPath: dp.progPaths.fromPod, direction: 'ingress', linkPinPath: linkPin(dp, pod, 'ingress') });
  attachTcx({ ifindex: pod.hostIfindex, progPinPath: dp.progPaths.toPod, direction: 'egress', linkPinPath: linkPin(dp, pod, 'egress') });
}

/** Pings from inside `from`; returns how many of PING_COUNT echo requests were answered. */
function ping(from: Pod, to: string, count = PING_COUNT): number {
  const args = ['netns', 'exec', from.netns, 'python3', '-c', PING_PY, to, String(count), String(PING_TIMEOUT_S)];
  try {
    return Number(run('ip', args).trim());
  } catch (err: unknown) {
    // Exit status 1 with a count on stdout: some requests went unanswered.
    const out = ((err as { stdout?: string }).stdout ?? '').trim();
    if (!/^\d+$/.test(out)) throw err;
    return Number(out);
  }
}

/** A fresh object built by the Makefile's rule, without touching the one dist/ embeds. */
function ensureObjectBuilt(): Buffer {
  return withMakefileBuild((object) => readFileSync(object));
}

let objectBytes: Buffer;
let dp: Datapath | undefined;
let firstLoadAdopted: boolean | undefined;

beforeAll(() => {
  ensureBpffs(BPFFS);
  objectBytes = ensureObjectBuilt();
  dp = loadDatapath({ pinDir: PIN_DIR, objectBytes });
  firstLoadAdopted = dp.adopted;
});

afterAll(() => {
  cleanupAll([() => dp?.close(), () => removeDatapath(PIN_DIR)]);
  expect(existsSync(PIN_DIR)).toBe(false);
});

describe('loading and adopting', () => {
  it('loads into an empty pin dir and pins maps and programs', () => {
    expect(firstLoadAdopted).toBe(false);
    for (const path of ['maps/endpoints', 'maps/devices', 'maps/counters', 'progs/from_pod', 'progs/to_pod', 'links']) {
      expect(existsSync(join(PIN_DIR, path)), path).toBe(true);
    }
  });

  it('writes, reads, lists and deletes map entries', () => {
    const map = dp!.maps.devices;
    const info: EndpointInfo = { ifindex: 9, endpointId: 3, identity: 77, flags: 0, policyRev: 1, mac: '02:00:00:00:00:09', hostMac: '02:00:00:00:01:09', ipv4: '10.9.9.9', ipv6: null };
    expect(map.lookup(encodeU32(9))).toBeNull();
    map.update(encodeU32(9), encodeEndpointInfo(info));
    expect(decodeEndpointInfo(map.lookup(encodeU32(9))!)).toEqual(info);
    expect(map.keys()).toEqual([encodeU32(9)]);
    expect(() => map.update(encodeU32(9), encodeEndpointInfo(info), BPF_NOEXIST)).toThrow(/update map devices: EEXIST/);
    expect(map.delete(encodeU32(9))).toBe(true);
    expect(map.delete(encodeU32(9))).toBe(false);
    expect(map.keys()).toEqual([]);
  });

  it('rejects keys of the wrong size before calling the kernel', () => {
    expect(() => dp!.maps.endpoints.lookup(encodeU32(1))).toThrow(/key is 4 bytes, need 20/);
  });

  it('a second load adopts the pinned maps: an entry written before is still there', () => {
    const key = encodeEndpointKey({ family: 4, address: '10.9.9.10' });
    const info: EndpointInfo = { ifindex: 10, endpointId: 4, identity: 1, flags: 0, policyRev: 0, mac: '02:00:00:00:00:0a', hostMac: '02:00:00:00:01:0a', ipv4: '10.9.9.10', ipv6: null };
    dp!.maps.endpoints.update(key, encodeEndpointInfo(info));
    dp!.close();
    dp = loadDatapath({ pinDir: PIN_DIR, objectBytes });
    expect(dp.adopted).toBe(true);
    expect(decodeEndpointInfo(dp.maps.endpoints.lookup(key)!)).toEqual(info);
  });

  it('a missing program pin triggers a reload that re-uses the pinned maps', () => {
    const key = encodeEndpointKey({ family: 4, address: '10.9.9.10' });
    dp!.close();
    unlinkSync(join(PIN_DIR, 'progs', 'to_pod'));
    dp = loadDatapath({ pinDir: PIN_DIR, objectBytes });
    expect(dp.adopted).toBe(false);
    expect(existsSync(join(PIN_DIR, 'progs', 'to_pod'))).toBe(true);
    expect(dp.maps.endpoints.lookup(key)).not.toBeNull();
    expect(dp.maps.endpoints.delete(key)).toBe(true);
  });

  it('a link whose device was deleted reports detached, and detachTcx still removes its pin', () => {
    const dev = `sl${TAG}c`;
    const pin = join(dp!.linksDir, `${dev}-egress`);
    run('ip', ['link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}p`]);
    try {
      const { ifindex } = linkInfo(['link', 'show', 'dev', dev]);
      attachTcx({ ifindex, progPinPath: dp!.progPaths.toPod, direction: 'egress', linkPinPath: pin });
      expect(tcxLinkAttached(pin)).toBe(true);
      run('ip', ['link', 'del', dev]);
      expect(tcxLinkAttached(pin)).toBe(false);
      detachTcx(pin);
      expect(existsSync(pin)).toBe(false);
    } finally {
      cleanupAll([
        () => detachTcx(pin),
        () => existsSync(`/sys/class/net/${dev}`) && run('ip', ['link', 'del', dev]),
      ]);
    }
  });

  it('errors name the operation and carry the errno code', () => {
    try {
      attachTcx({ ifindex: 1, progPinPath: join(PIN_DIR, 'progs', 'nope'), direction: 'ingress', linkPinPath: join(PIN_DIR, 'links', 'x') });
      expect.unreachable();
    } catch (err: unknown) {
      expect(isBpfError(err, 'ENOENT')).toBe(true);
      expect((err as Error).message).toBe(`open pinned program at ${join(PIN_DIR, 'progs', 'nope')}: ENOENT`);
    }
  });
});

describe('packets between two pods on this node', () => {
  const pods: Pod[] = [];
  let server: ChildProcess | undefined;

  beforeAll(() => {
    pods.push(createPod('a', `10.250.${SUBNET}.2`, 1), createPod('b', `10.250.${SUBNET}.3`, 2));
    for (const pod of pods) registerPod(dp!, pod);
    for (const pod of pods) attachPod(dp!, pod);
  });

  afterAll(() => {
    cleanupAll([
      () => server?.kill(),
      ...pods.flatMap((pod) => [
        () => detachTcx(linkPin(dp!, pod, 'ingress')),
        () => detachTcx(linkPin(dp!, pod, 'egress')),
      ]),
      ...podNames.map((names) => () => deletePod(names)),
    ]);
    for (const pod of podNames) {
      expect(existsSync(`/sys/class/net/${pod.hostIf}`), `${pod.hostIf} left behind`).toBe(false);
      expect(run('ip', ['netns', 'list'])).not.toContain(pod.netns);
    }
  });

  it('TCX links are pinned and attached', () => {
    for (const pod of pods) {
      expect(tcxLinkAttached(linkPin(dp!, pod, 'ingress'))).toBe(true);
      expect(tcxLinkAttached(linkPin(dp!, pod, 'egress'))).toBe(true);
    }
    expect(tcxLinkAttached(join(dp!.linksDir, 'absent'))).toBe(false);
  });

  it('attaching over an existing link pin fails with EEXIST and leaves the first link in place', () => {
    const [a] = pods;
    expect(() => attachTcx({ ifindex: a!.hostIfindex, progPinPath: dp!.progPaths.fromPod, direction: 'ingress', linkPinPath: linkPin(dp!, a!, 'ingress') })).toThrow(/EEXIST/);
    expect(tcxLinkAttached(linkPin(dp!, a!, 'ingress'))).toBe(true);
  });

  it('A pings B and B pings A; the gateway ARP is answered with the host veth MAC', () => {
    const [a, b] = pods as [Pod, Pod];
    const before = dp!.readCounters();
    expect(ping(a, b.ip)).toBe(PING_COUNT);
    expect(ping(b, a.ip)).toBe(PING_COUNT);
    const after = dp!.readCounters();
    // 3 requests + 3 replies each way, all redirected pod to pod.
    expect(after.REDIRECT_LOCAL.packets - before.REDIRECT_LOCAL.packets).toBeGreaterThanOrEqual(4 * PING_COUNT);
    expect(after.REDIRECT_LOCAL.bytes).toBeGreaterThan(before.REDIRECT_LOCAL.bytes);
    expect(after.ARP_REPLY.packets - before.ARP_REPLY.packets).toBeGreaterThanOrEqual(2);
    expect(after.FROM_POD.packets).toBeGreaterThan(before.FROM_POD.packets);
    expect(after.DROP_SPOOF.packets).toBe(before.DROP_SPOOF.packets);
    // bpf_redirect_peer skips the destination host veth's egress, so to_pod never sees these
    // (with bpf_redirect it would: TO_POD then grows by every redirected packet). Only ARP
    // replies and the odd IPv6 neighbour packet pass there: a burst of echoes many more than
    // those strays (a dozen in a second on a loaded machine) tells the two apart.
    const burst = 40;
    const beforeBurst = dp!.readCounters();
    expect(ping(a, b.ip, burst)).toBe(burst);
    const afterBurst = dp!.readCounters();
    expect(afterBurst.REDIRECT_LOCAL.packets - beforeBurst.REDIRECT_LOCAL.packets).toBeGreaterThanOrEqual(2 * burst);
    expect(afterBurst.TO_POD.packets - beforeBurst.TO_POD.packets).toBeLessThan(burst);
    for (const pod of [a, b]) {
      const [neigh] = JSON.parse(run('ip', ['-n', pod.netns, '-j', 'neigh', 'show', GATEWAY])) as { lladdr: string }[];
      expect(neigh?.lladdr).toBe(pod.hostMac);
    }
  });

  it('a TCP connection from A to B works', async () => {
    const [a, b] = pods as [Pod, Pod];
    const node = process.execPath;
    server = spawn('ip', ['netns', 'exec', b.netns, node, '-e', TCP_SERVER_JS, b.ip, String(TCP_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('TCP server did not start')), SERVER_READY_TIMEOUT_MS);
      server!.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      server!.once('exit', (code) => reject(new Error(`TCP server exited with ${code}`)));
    });
    const reply = run('ip', ['netns', 'exec', a.netns, node, '-e', TCP_CLIENT_JS, b.ip, String(TCP_PORT)]);
    expect(reply.trim()).toBe('pong:ping');
  });

  it('a packet from a source address that is not the pod\'s own is dropped as spoofed', () => {
    const [a, b] = pods as [Pod, Pod];
    const spoofed = `10.250.${SUBNET}.99`;
    run('ip', ['-n', a.netns, 'addr', 'add', `${spoofed}/32`, 'dev', 'eth0']);
    run('ip', ['-n', a.netns, 'route', 'replace', 'default', 'via', GATEWAY, 'dev', 'eth0', 'src', spoofed]);
    try {
      const before = dp!.readCounters();
      expect(ping(a, b.ip)).toBe(0);
      const after = dp!.readCounters();
      expect(after.DROP_SPOOF.packets - before.DROP_SPOOF.packets).toBe(PING_COUNT);
    } finally {
      run('ip', ['-n', a.netns, 'route', 'replace', 'default', 'via', GATEWAY, 'dev', 'eth0']);
      run('ip', ['-n', a.netns, 'addr', 'del', `${spoofed}/32`, 'dev', 'eth0']);
    }
  });

  it('a pod without an IPv6 address cannot send from the unspecified address (::), which its empty field equals', () => {
    const [a] = pods as [Pod, Pod];
    const before = dp!.readCounters();
    // Built at layer 2: the pod has no IPv6 route. Not neighbour discovery, so :: is not its to use.
    const script = `from scapy.all import Ether, IPv6, UDP, Raw, sendp, get_if_hwaddr
sendp([Ether(src=get_if_hwaddr('eth0'), dst='ff:ff:ff:ff:ff:ff') / IPv6(src='::', dst='fd00:99::1') / UDP(sport=40000, dport=53) / Raw(b'x')] * 5, iface='eth0', verbose=0)`;
    run('ip', ['netns', 'exec', a.netns, '/usr/bin/python3', '-c', script]);
    const after = dp!.readCounters();
    expect(after.DROP_SPOOF.packets - before.DROP_SPOOF.packets).toBe(5);
  });

  it('a device without an endpoint entry drops what its pod sends', () => {
    const [a, b] = pods as [Pod, Pod];
    const devKey = encodeU32(a.hostIfindex);
    const saved = dp!.maps.devices.lookup(devKey)!;
    dp!.maps.devices.delete(devKey);
    try {
      const before = dp!.readCounters();
      expect(ping(a, b.ip)).toBe(0);
      expect(dp!.readCounters().DROP_UNKNOWN_EP.packets).toBeGreaterThan(before.DROP_UNKNOWN_EP.packets);
    } finally {
      dp!.maps.devices.update(devKey, saved);
    }
  });

  it('detachTcx removes the link and is idempotent', () => {
    const [a] = pods as [Pod];
    const pin = linkPin(dp!, a, 'egress');
    detachTcx(pin);
    expect(existsSync(pin)).toBe(false);
    expect(tcxLinkAttached(pin)).toBe(false);
    detachTcx(pin);
  });
});

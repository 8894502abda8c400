// datapath/netlink + datapath/netns: byte-level encoder tests, then the CNI ADD/DEL sequence against
// the real kernel (root) in a namespace of our own. Everything created here is removed in afterAll.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nlattr, nlattrNested, nlattrString, nlattrU32, parseNlattrs, nlString } from '../datapath/nlattr.ts';
import { formatIp, parseIp, parsePrefix } from '../lib/ip-bytes.ts';
import { encodeVethRequest, encodeVxlanRequest } from '../datapath/link.ts';
import { encodeFdbEntry } from '../datapath/neighbor.ts';
import { encodeRoute } from '../datapath/route.ts';
import {
  addAddress,
  addNeighbor,
  addRoute,
  createVeth,
  deleteLink,
  deleteRoute,
  linkByName,
  listAddresses,
  listRoutes,
  openRtnl,
  setLinkUp,
  type Rtnl,
} from '../datapath/netlink.ts';
import { currentNetnsInode, isNetnsPath, openNetns, withNetns, type NetnsHandle } from '../datapath/netns.ts';

const TAG = randomBytes(3).toString('hex');
const NS = `sl-nltest-${TAG}`;
const NS_PATH = `/var/run/netns/${NS}`;
const HOST_IF = `slnt${TAG}h`;
const OTHER_IF = `slnt${TAG}x`;
const SUBNET_OCTET = 1 + (randomBytes(1)[0] ?? 0) % 254;
const POD_IP = `10.251.${SUBNET_OCTET}.2`;
const GATEWAY_IP = '169.254.1.1';
const POD_MAC = '02:51:00:00:00:02';
// Canonical text (RFC 5952): a random group such as 0ef2 comes back from the kernel as ef2.
const POD_IP6 = formatIp(parseIp(`fd51:${TAG.slice(0, 4)}::2`).bytes);
const TCP_PORT = 40_000 + ((randomBytes(2).readUInt16LE(0) ?? 0) % 20_000);

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function tryIp(...args: string[]): boolean {
  try {
    ip(...args);
    return true;
  } catch {
    return false;
  }
}

describe('netlink attribute encoder', () => {
  it('encodes a u32 attribute as len=8, type, value (little-endian)', () => {
    expect([...nlattrU32(4, 1400)]).toEqual([8, 0, 4, 0, 0x78, 0x05, 0, 0]);
  });

  it('pads a string attribute to 4 bytes after its NUL, with len excluding the padding', () => {
    // "eth0\0" = 5 bytes -> len 9, padded to 12
    expect([...nlattrString(3, 'eth0')]).toEqual([9, 0, 3, 0, 0x65, 0x74, 0x68, 0x30, 0, 0, 0, 0]);
  });

  it('nests attributes: the outer length covers the padded children', () => {
    const nested = nlattrNested(18, [nlattrString(1, 'veth'), nlattrU32(2, 7)]);
    // outer hdr 4 + "veth\0" attr (len 9 -> 12) + u32 attr 8 = 24
    expect([...nested]).toEqual([
      24, 0, 18, 0,
      9, 0, 1, 0, 0x76, 0x65, 0x74, 0x68, 0, 0, 0, 0,
      8, 0, 2, 0, 7, 0, 0, 0,
    ]);
  });

  it('concatenates payload parts, e.g. a struct followed by attributes', () => {
    expect([...nlattr(1, [Buffer.from([1, 2]), Buffer.from([3])])]).toEqual([7, 0, 1, 0, 1, 2, 3, 0]);
  });

  it('decodes what it encodes, masking the NLA_F_NESTED bit', () => {
    const buf = Buffer.concat([nlattrString(3, 'lxc1'), nlattrU32(4, 9000), nlattr(0x8000 | 18, [nlattrU32(1, 5)])]);
    const attrs = parseNlattrs(buf);
    expect(nlString(attrs.get(3) ?? Buffer.alloc(0))).toBe('lxc1');
    expect(attrs.get(4)?.readUInt32LE(0)).toBe(9000);
    expect(parseNlattrs(attrs.get(18) ?? Buffer.alloc(0)).get(1)?.readUInt32LE(0)).toBe(5);
  });

  it('stops at a truncated attribute instead of reading past the buffer', () => {
    const buf = Buffer.concat([nlattrU32(4, 1), Buffer.from([200, 0, 5, 0])]);
    expect([...parseNlattrs(buf).keys()]).toEqual([4]);
  });

  it('encodes the veth request with the peer (ifinfomsg + name + netns fd) inside IFLA_INFO_DATA', () => {
    const parts = encodeVethRequest({ hostName: 'lxc1', peerName: 'eth0', peerNetnsFd: 7, mtu: 1400 });
    const msg = Buffer.concat(parts);
    expect(msg.subarray(0, 16)).toEqual(Buffer.alloc(16)); // ifinfomsg: AF_UNSPEC, index 0, no flags
    const attrs = parseNlattrs(msg, 16);
    expect(nlString(attrs.get(3) ?? Buffer.alloc(0))).toBe('lxc1');
    expect(attrs.get(4)?.readUInt32LE(0)).toBe(1400);
    const linkinfo = parseNlattrs(attrs.get(18) ?? Buffer.alloc(0));
    expect(nlString(linkinfo.get(1) ?? Buffer.alloc(0))).toBe('veth');
    const peer = parseNlattrs(linkinfo.get(2) ?? Buffer.alloc(0)).get(1) ?? Buffer.alloc(0);
    expect(peer.subarray(0, 16)).toEqual(Buffer.alloc(16));
    // hand-computed peer attributes: IFLA_IFNAME "eth0", IFLA_MTU 1400, IFLA_NET_NS_FD 7
    expect([...peer.subarray(16)]).toEqual([
      9, 0, 3, 0, 0x65, 0x74, 0x68, 0x30, 0, 0, 0, 0,
      8, 0, 4, 0, 0x78, 0x05, 0, 0,
      8, 0, 28, 0, 7, 0, 0, 0,
    ]);
  });

  it('rejects interface names the kernel would reject', () => {
    expect(() => encodeVethRequest({ hostName: 'a'.repeat(16), peerName: 'eth0', peerNetnsFd: 3 })).toThrow(TypeError);
    expect(() => encodeVethRequest({ hostName: 'a/b', peerName: 'eth0', peerNetnsFd: 3 })).toThrow(TypeError);
  });

  it('encodes an onlink default route via a gateway: rtmsg flags RTNH_F_ONLINK, no RTA_DST', () => {
    const [msg, ...attrs] = encodeRoute({ dst: 'default', gateway: GATEWAY_IP, index: 5, onlink: true });
    // family AF_INET, dst_len 0, src_len 0, tos 0, table main, proto boot, scope universe, unicast, flags 4
    expect([...(msg ?? [])]).toEqual([2, 0, 0, 0, 254, 3, 0, 1, 4, 0, 0, 0]);
    expect(Buffer.concat(attrs)).toEqual(Buffer.concat([nlattrU32(4, 5), nlattr(5, Buffer.from([169, 254, 1, 1]))]));
  });

  it('puts a route protocol, when given, into rtmsg (a delete matches any protocol)', () => {
    expect(encodeRoute({ dst: '10.9.0.0/24', gateway: '10.9.0.0', protocol: 83 })[0]?.[5]).toBe(83);
    expect(encodeRoute({ dst: '10.9.0.0/24', gateway: '10.9.0.0', protocol: 83 }, true)[0]?.[5]).toBe(0);
  });

  it('encodes a VXLAN device: name, MTU, MAC, then VNI, underlay, local, no learning and the port in network order', () => {
    const msg = Buffer.concat(encodeVxlanRequest({ name: 'vx0', vni: 1, port: 4789, local: '172.23.0.2', underlayIndex: 7, mtu: 1450, mac: '02:53:ac:17:00:02' }));
    expect(msg.subarray(0, 16)).toEqual(Buffer.alloc(16));
    const attrs = parseNlattrs(msg, 16);
    expect(nlString(attrs.get(3) ?? Buffer.alloc(0))).toBe('vx0');
    expect(attrs.get(4)?.readUInt32LE(0)).toBe(1450);
    expect(attrs.get(1)?.toString('hex')).toBe('0253ac170002');
    const linkinfo = parseNlattrs(attrs.get(18) ?? Buffer.alloc(0));
    expect(nlString(linkinfo.get(1) ?? Buffer.alloc(0))).toBe('vxlan');
    // hand-computed IFLA_VXLAN_ID 1, LINK 7, LOCAL 172.23.0.2, LEARNING 0, PORT 4789 (0x12b5, big-endian)
    expect([...(linkinfo.get(2) ?? [])]).toEqual([
      8, 0, 1, 0, 1, 0, 0, 0,
      8, 0, 3, 0, 7, 0, 0, 0,
      8, 0, 4, 0, 172, 23, 0, 2,
      5, 0, 7, 0, 0, 0, 0, 0,
      6, 0, 15, 0, 0x12, 0xb5, 0, 0,
    ]);
  });

  it('encodes a VXLAN forwarding entry: ndmsg AF_BRIDGE, permanent, NTF_SELF; the remote only when adding', () => {
    const [msg, ...attrs] = encodeFdbEntry({ index: 9, mac: '02:53:ac:17:00:03', dst: '172.23.0.3' });
    expect([...(msg ?? [])]).toEqual([7, 0, 0, 0, 9, 0, 0, 0, 0x80, 0, 2, 0]);
    expect(Buffer.concat(attrs)).toEqual(Buffer.concat([nlattr(2, Buffer.from([2, 0x53, 0xac, 0x17, 0, 3])), nlattr(1, Buffer.from([172, 23, 0, 3]))]));
    expect(encodeFdbEntry({ index: 9, mac: '02:53:ac:17:00:03' })).toHaveLength(2);
  });
});

describe('ip text <-> bytes', () => {
  it.each([
    ['10.1.2.3', '10.1.2.3'],
    ['fd00::1', 'fd00::1'],
    ['FD00:0:0:0:0:0:0:1', 'fd00::1'],
    ['::', '::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::ffff:10.0.0.1', '::ffff:a00:1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ])('%s round-trips as %s', (text, canonical) => {
    expect(formatIp(parseIp(text).bytes)).toBe(canonical);
  });

  it('parses prefixes and rejects bad ones', () => {
    expect(parsePrefix('10.1.2.3/32').prefixLength).toBe(32);
    expect(parsePrefix('default', 6)).toMatchObject({ family: 6, prefixLength: 0 });
    expect(() => parsePrefix('10.1.2.3/33')).toThrow(TypeError);
    expect(() => parsePrefix('10.1.2/24')).toThrow(TypeError);
    expect(() => parsePrefix('10.1.2.3/')).toThrow(TypeError);
  });
});

describe('against the kernel (root, own netns)', () => {
  let host: Rtnl | undefined;
  let pod: Rtnl | undefined;
  let podNs: NetnsHandle | undefined;
  const regularFile = join(tmpdir(), `sl-nltest-${TAG}.txt`);

  beforeAll(() => {
    ip('netns', 'add', NS);
    podNs = openNetns(NS_PATH);
    host = openRtnl();
    pod = openRtnl(NS_PATH);
    writeFileSync(regularFile, 'not a netns');
  });

  afterAll(() => {
    host?.close();
    pod?.close();
    podNs?.close();
    for (const name of [HOST_IF, OTHER_IF]) if (tryIp('link', 'show', name)) tryIp('link', 'del', name);
    tryIp('route', 'del', `${POD_IP}/32`);
    tryIp('netns', 'del', NS);
    rmSync(regularFile, { force: true });
  });

  const rtnlHost = (): Rtnl => host as Rtnl;
  const rtnlPod = (): Rtnl => pod as Rtnl;

  it('isNetnsPath accepts netns files and rejects directories and regular files', () => {
    expect(isNetnsPath(NS_PATH)).toBe(true);
    expect(isNetnsPath('/proc/self/ns/net')).toBe(true);
    expect(isNetnsPath(`/proc/${process.pid}/ns/net`)).toBe(true);
    expect(isNetnsPath('/tmp')).toBe(false);
    expect(isNetnsPath(regularFile)).toBe(false);
    expect(isNetnsPath('/var/run/netns/sl-nltest-does-not-exist')).toBe(false);
  });

  it('withNetns runs inside the namespace and restores the original one, even when fn throws', () => {
    const before = currentNetnsInode();
    const target = statSync(NS_PATH).ino;
    expect(target).not.toBe(before);
    expect(withNetns(NS_PATH, () => currentNetnsInode())).toBe(target);
    expect(currentNetnsInode()).toBe(before);
    expect(() =>
      withNetns(podNs as NetnsHandle, () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(currentNetnsInode()).toBe(before);
    expect(() => withNetns('/tmp', () => 1)).toThrow(); // not a namespace: setns EINVAL (or open fails)
    expect(currentNetnsInode()).toBe(before);
    expect(() => withNetns(NS_PATH, () => Promise.resolve(1))).toThrow('must be synchronous');
    expect(currentNetnsInode()).toBe(before);
    expect(withNetns(podNs as NetnsHandle, () => currentNetnsInode())).toBe(target); // a passed handle stays open
  });

  it('creates a veth pair with the peer directly inside the pod namespace', async () => {
    await createVeth(rtnlHost(), { hostName: HOST_IF, peerName: 'eth0', peerNetnsFd: (podNs as NetnsHandle).fd, mtu: 1400, peerMac: POD_MAC });
    expect(ip('-n', NS, '-o', 'link', 'show', 'eth0')).toContain('mtu 1400');
    expect(ip('-o', 'link', 'show', HOST_IF)).toContain(HOST_IF);
    expect(tryIp('-n', NS, 'link', 'show', HOST_IF)).toBe(false);
    expect(tryIp('link', 'show', 'eth0') && ip('-o', 'link', 'show', 'eth0').includes('veth')).toBe(false);
  });

  it('linkByName sees each end from its own namespace, with kind and peer index', async () => {
    const h = await linkByName(rtnlHost(), HOST_IF);
    const p = await linkByName(rtnlPod(), 'eth0');
    expect(h).toMatchObject({ name: HOST_IF, kind: 'veth', mtu: 1400, up: false });
    expect(p).toMatchObject({ name: 'eth0', kind: 'veth', mtu: 1400, mac: POD_MAC, up: false });
    expect(h?.peerIndex).toBe(p?.index);
    expect(p?.peerIndex).toBe(h?.index);
    expect(await linkByName(rtnlHost(), `slnt${TAG}n`)).toBeNull();
  });

  it('rejects a duplicate veth with code EEXIST (host name taken, or peer name taken in the pod)', async () => {
    const fd = (podNs as NetnsHandle).fd;
    const dupHost = createVeth(rtnlHost(), { hostName: HOST_IF, peerName: 'eth1', peerNetnsFd: fd });
    await expect(dupHost).rejects.toMatchObject({ code: 'EEXIST', errno: 17 });
    await expect(dupHost).rejects.toThrow(`create veth ${HOST_IF} <-> eth1: EEXIST`);
    const dupPeer = createVeth(rtnlHost(), { hostName: OTHER_IF, peerName: 'eth0', peerNetnsFd: fd });
    await expect(dupPeer).rejects.toMatchObject({ code: 'EEXIST' });
    expect(tryIp('link', 'show', OTHER_IF)).toBe(false);
    expect(tryIp('-n', NS, 'link', 'show', 'eth1')).toBe(false);
  });

  it('hostUp brings the host end up in the creating message; the peer stays down', async () => {
    await createVeth(rtnlHost(), { hostName: OTHER_IF, peerName: 'eth9', peerNetnsFd: (podNs as NetnsHandle).fd, hostUp: true });
    try {
      expect(await linkByName(rtnlHost(), OTHER_IF)).toMatchObject({ up: true, kind: 'veth' });
      expect(await linkByName(rtnlPod(), 'eth9')).toMatchObject({ up: false });
    } finally {
      expect(await deleteLink(rtnlPod(), 'eth9')).toBe(true); // either end removes the pair
    }
    expect(tryIp('link', 'show', OTHER_IF)).toBe(false);
  });

  it('configures the pod (addr /32, gateway route, default route onlink) and the host route; TCP reaches the pod', async () => {
    const h = await linkByName(rtnlHost(), HOST_IF);
    const p = await linkByName(rtnlPod(), 'eth0');
    if (h === null || p === null) throw new Error('veth missing');
    await setLinkUp(rtnlHost(), h.index);
    await setLinkUp(rtnlPod(), p.index);
    await addAddress(rtnlPod(), { index: p.index, address: POD_IP, prefixLength: 32, dev: 'eth0' });
    await addAddress(rtnlPod(), { index: p.index, address: POD_IP6, prefixLength: 128, dev: 'eth0' });
    await addRoute(rtnlPod(), { dst: `${GATEWAY_IP}/32`, index: p.index, scope: 'link', dev: 'eth0' });
    await addRoute(rtnlPod(), { dst: 'default', gateway: GATEWAY_IP, index: p.index, onlink: true, dev: 'eth0' });
    // the host answers for the gateway address: here with a permanent ARP entry (the datapath answers ARP in production)
    await addNeighbor(rtnlPod(), { index: p.index, ip: GATEWAY_IP, mac: h.mac, dev: 'eth0' });
    await addRoute(rtnlHost(), { dst: `${POD_IP}/32`, index: h.index, scope: 'link', dev: HOST_IF });

    expect((await linkByName(rtnlPod(), 'eth0'))?.up).toBe(true);
    expect(ip('-n', NS, 'route', 'show', 'default')).toContain(`default via ${GATEWAY_IP} dev eth0 onlink`);
    expect(ip('-n', NS, 'neigh', 'show', GATEWAY_IP)).toContain('PERMANENT');
    await expect(tcpEcho(POD_IP, NS)).resolves.toBe('pong');
  });

  it('listRoutes and listAddresses see what was added', async () => {
    const h = await linkByName(rtnlHost(), HOST_IF);
    const p = await linkByName(rtnlPod(), 'eth0');
    const podRoutes = await listRoutes(rtnlPod(), { family: 4 });
    expect(podRoutes).toContainEqual(expect.objectContaining({ dst: 'default', gateway: GATEWAY_IP, index: p?.index, onlink: true }));
    expect(podRoutes).toContainEqual(expect.objectContaining({ dst: `${GATEWAY_IP}/32`, index: p?.index, scope: 'link' }));
    const hostRoutes = await listRoutes(rtnlHost(), { family: 4 });
    expect(hostRoutes).toContainEqual(expect.objectContaining({ dst: `${POD_IP}/32`, index: h?.index, scope: 'link', family: 4 }));
    expect(hostRoutes.every((r) => r.table === 254)).toBe(true);
    const addrs = await listAddresses(rtnlPod(), p?.index);
    expect(addrs).toContainEqual({ index: p?.index, family: 4, address: POD_IP, prefixLength: 32, scope: 0 });
    expect(addrs).toContainEqual(expect.objectContaining({ family: 6, address: POD_IP6, prefixLength: 128 }));
    expect((await listAddresses(rtnlPod(), p?.index, 4)).every((a) => a.family === 4)).toBe(true);
  });

  it('addRoute replaces by default, fails with EEXIST when exclusive, and errors carry context and code', async () => {
    const p = await linkByName(rtnlPod(), 'eth0');
    const spec = { dst: 'default', gateway: GATEWAY_IP, index: p?.index ?? 0, onlink: true, dev: 'eth0' };
    await addRoute(rtnlPod(), spec); // again: replace, no error
    await addAddress(rtnlPod(), { index: p?.index ?? 0, address: POD_IP, prefixLength: 32 }); // again: replace
    await expect(addRoute(rtnlPod(), { ...spec, exclusive: true })).rejects.toMatchObject({ code: 'EEXIST' });
    const missing = addRoute(rtnlHost(), { dst: '10.251.255.0/24', index: 0x7ffffff0, dev: 'lxcgone' });
    await expect(missing).rejects.toMatchObject({ code: 'ENODEV', errno: 19 });
    await expect(missing).rejects.toThrow('add route 10.251.255.0/24 dev lxcgone: ENODEV');
    const inPod = addAddress(rtnlPod(), { index: 0x7ffffff0, address: '10.251.255.1', prefixLength: 32, dev: 'gone0' });
    await expect(inPod).rejects.toThrow(`(netns ${NS_PATH})`);
  });

  it('deleteRoute is idempotent', async () => {
    const h = await linkByName(rtnlHost(), HOST_IF);
    const spec = { dst: `${POD_IP}/32`, index: h?.index ?? 0 };
    expect(await deleteRoute(rtnlHost(), spec)).toBe(true);
    expect(await deleteRoute(rtnlHost(), spec)).toBe(false);
    expect(ip('route', 'show', `${POD_IP}/32`)).toBe('');
  });

  it('deleteLink removes both ends; deleting again resolves false (no error)', async () => {
    const h = await linkByName(rtnlHost(), HOST_IF);
    expect(await deleteLink(rtnlHost(), HOST_IF)).toBe(true);
    expect(tryIp('link', 'show', HOST_IF)).toBe(false);
    expect(tryIp('-n', NS, 'link', 'show', 'eth0')).toBe(false);
    expect(await linkByName(rtnlPod(), 'eth0')).toBeNull();
    expect(await deleteLink(rtnlHost(), HOST_IF)).toBe(false);
    expect(await deleteLink(rtnlHost(), h?.index ?? 0x7ffffff0)).toBe(false);
  });

  it('an rtnl socket keeps the process alive neither while idle nor after close', () => {
    const script = [
      `import { openRtnl, linkByName } from ${JSON.stringify(new URL('../datapath/netlink.ts', import.meta.url).href)};`,
      `const idle = openRtnl(${JSON.stringify(NS_PATH)});`,
      'const r = openRtnl();',
      "await linkByName(r, 'lo');",
      'r.close();',
      "console.log('done');",
    ].join('\n');
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
    expect(out.trim()).toBe('done');
  });
});

/** Starts a one-shot TCP echo server inside `ns` (via `ip netns exec` + this Node) and talks to it from the host. */
function tcpEcho(address: string, ns: string): Promise<string> {
  const server = [
    "const net = require('node:net');",
    `const s = net.createServer((c) => c.once('data', (d) => { c.end(d.toString() === 'ping' ? 'pong' : 'bad'); s.close(); }));`,
    `s.listen(${TCP_PORT}, ${JSON.stringify(address)}, () => console.log('ready'));`,
    'setTimeout(() => process.exit(2), 10000).unref();',
  ].join('\n');
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', server], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`no TCP answer from ${address}:${TCP_PORT}`));
    }, 10_000);
    child.stdout.once('data', () => {
      const sock = connect({ host: address, port: TCP_PORT, timeout: 5_000 });
      let reply = '';
      sock.on('connect', () => sock.write('ping'));
      sock.on('data', (d) => (reply += d.toString()));
      sock.on('end', () => {
        clearTimeout(timer);
        resolve(reply);
      });
      sock.on('timeout', () => sock.destroy(new Error('timeout')));
      sock.on('error', (e) => {
        clearTimeout(timer);
        child.kill();
        reject(e);
      });
    });
  });
}

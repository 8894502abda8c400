/**
 * ADD: addresses from the agent (one per pool: IPv4 and/or IPv6) → veth pair
 * with the peer created inside the pod netns → pod side (address /32 or /128,
 * a link-scope route to the gateway, a default route via it, onlink) → host
 * side (up, /32 or /128 route to the pod) → TCX programs on the host veth →
 * endpoint registered with the agent. Each step arranges its own undo right
 * after it succeeds; a failure runs the undos in reverse, so a failed ADD
 * leaves nothing. A retried ADD (same container ID and ifname) gets the same
 * addresses and rebuilds the attachment, so it leaks nothing either.
 *
 * The allocation request goes out first: the agent allocates while this
 * process loads what the kernel work needs (koffi, the netlink addon,
 * libbpf), which would otherwise come first and add to every ADD. The kernel
 * modules are therefore imported here, not at the top.
 */
import { agentRequest, AgentError } from '../contract/client.ts';
import type { AllocateResponse, Endpoint, EndpointSpec, PodAddress } from '../contract/api-types.ts';
import type { Link, Rtnl } from '../datapath/netlink.ts';
import type { NetnsHandle } from '../datapath/netns.ts';
import type { CniEnv } from './config.ts';
import { podIdentity } from './config.ts';
import { failPoint } from './fail-point.ts';
import { requirePodNetns } from './pod-netns.ts';
import { delQueueDir, releaseAttachment } from './release.ts';
import { unqueueDel } from '../contract/del-queue.ts';
import { parsePrevResult } from './result.ts';
import { CniError, CNI_ERR, type CniResult, type NetConf } from './spec.ts';
import { hostVethName, linkPins } from './names.ts';
import { agentSocket, toCniError } from './agent-errors.ts';
import { errorMessage } from '../lib/errors.ts';

const DEFAULT_MTU = 1500;

type Undo = () => unknown;

/** An allocated address split into its parts. */
interface PodIp {
  address: string;
  prefixLength: number;
  gateway: string;
  family: 4 | 6;
}

function splitAddress(ip: PodAddress): PodIp {
  const [address, prefix] = ip.address.split('/') as [string, string];
  return { address, prefixLength: Number(prefix), gateway: ip.gateway, family: ip.family };
}

/** The modules of the kernel work, loaded while the agent allocates. */
async function loadKernel() {
  const [netlink, netns, tcx, hostVeth] = await Promise.all([
    import('../datapath/netlink.ts'),
    import('../datapath/netns.ts'),
    import('../datapath/tcx.ts'),
    import('./host-veth.ts'),
  ]);
  return { ...netlink, ...netns, ...tcx, ...hostVeth };
}
type Kernel = Awaited<ReturnType<typeof loadKernel>>;

/** What one ADD works with: its names, its netlink sockets and its undo stack. */
interface Attempt {
  env: CniEnv;
  conf: NetConf;
  socket: string;
  pod: ReturnType<typeof podIdentity>;
  hostIfname: string;
  /** Run in reverse when a later step fails. */
  undo: Undo[];
}

/** An Attempt once the kernel modules are loaded and the host and pod namespaces are open. */
interface KernelAttempt extends Attempt {
  k: Kernel;
  host: Rtnl;
  netns: NetnsHandle;
}

/** Runs ADD; resolves with the result to print, rejects with a CniError after rolling back. */
export async function cmdAdd(env: CniEnv, conf: NetConf): Promise<CniResult> {
  // A chained plugin's result is validated before anything is created.
  const prev = conf.prevResult === undefined ? undefined : parsePrevResult(conf.prevResult, conf.cniVersion);
  const a: Attempt = {
    env,
    conf,
    socket: agentSocket(conf),
    pod: podIdentity(env, conf),
    hostIfname: hostVethName(env.containerId, env.ifname),
    undo: [],
  };
  // Sent now, awaited after the kernel modules are loaded; its undo is pushed when it succeeds.
  const allocation = allocate(a);
  allocation.catch(() => undefined);
  let host: Rtnl | undefined;
  let netns: NetnsHandle | undefined;
  let podNl: Rtnl | undefined;
  try {
    // One turn of the event loop puts the request on the agent's socket before the synchronous loading below.
    await new Promise((resolve) => setImmediate(resolve));
    await requirePodNetns(env);
    const k = await loadKernel();
    host = k.openRtnl();
    netns = k.openNetns(env.netns);
    const ka: KernelAttempt = { ...a, k, host, netns };
    const alloc = await allocation;
    const ips = alloc.ips.map(splitAddress);
    // The network config wins; else the agent's (a VXLAN overlay needs room for its headers).
    const mtu = conf.mtu ?? alloc.mtu ?? DEFAULT_MTU;
    const pins = linkPins(alloc.datapath.linksDir, a.hostIfname);
    // A retried ADD finds what an interrupted one left under the same names: start clean.
    await k.deleteLink(host, a.hostIfname);
    k.detachTcx(pins.ingress);
    k.detachTcx(pins.egress);

    podNl = k.openRtnl(netns);
    const { podLink, hostLink } = await createPodVeth(ka, podNl, mtu);
    await configurePodSide(ka, podNl, podLink.index, ips);
    failPoint('pod-config');
    await routeToPod(ka, hostLink.index, ips);
    failPoint('host-config');
    await step(`attach datapath programs to ${a.hostIfname}`, () => {
      k.attachTcx({ ifindex: hostLink.index, progPinPath: alloc.datapath.fromPod, direction: 'ingress', linkPinPath: pins.ingress });
      a.undo.push(() => k.detachTcx(pins.ingress));
      k.attachTcx({ ifindex: hostLink.index, progPinPath: alloc.datapath.toPod, direction: 'egress', linkPinPath: pins.egress });
      a.undo.push(() => k.detachTcx(pins.egress));
    });
    failPoint('attach');
    await register(a, hostLink, podLink, ips);
    failPoint('register');
    return addResult(a, prev, alloc, ips, { host: hostLink, pod: podLink }, mtu);
  } catch (err: unknown) {
    // An allocation still in flight is waited for, so that its release is among the undos.
    await allocation.catch(() => undefined);
    throw await rollBack(a.undo, err);
  } finally {
    podNl?.close();
    host?.close();
    netns?.close();
  }
}

/** The pod's addresses from the agent; their release (and the endpoint's removal) is the first undo. */
async function allocate(a: Attempt): Promise<AllocateResponse> {
  const { env, conf } = a;
  // A release queued by an earlier, failed attempt must not undo this one when the agent drains its queue:
  // this ADD re-allocates the same addresses (allocation is idempotent) and rebuilds everything else.
  unqueueDel(delQueueDir(conf), env.containerId, env.ifname);
  const alloc = await agentRequest<AllocateResponse>(a.socket, 'POST', '/v1/ipam/allocate', {
    containerID: env.containerId,
    ifname: env.ifname,
    namespace: a.pod.namespace ?? '',
    pod: a.pod.name ?? '',
    // With the netns, IPAM reconciliation sees a running ADD's allocation as alive before its endpoint exists.
    netns: env.netns,
  }).catch(toCniError('allocate an address'));
  // Unregisters the endpoint too, so it also undoes the last step; queued if the agent is gone by then.
  a.undo.push(() => releaseAttachment(conf, env.containerId, env.ifname, a.hostIfname));
  failPoint('allocate');
  if (alloc.ips.length === 0) throw new CniError(CNI_ERR.IO, 'allocate an address: the agent returned no address (does it have a pod CIDR?)');
  return alloc;
}

/** The veth pair, its peer created straight in the pod netns, the host side marked as ours. */
async function createPodVeth(a: KernelAttempt, podNl: Rtnl, mtu: number): Promise<{ podLink: Link; hostLink: Link }> {
  const { env, host, hostIfname, k } = a;
  await k.createVeth(host, { hostName: hostIfname, peerName: env.ifname, peerNetnsFd: a.netns.fd, mtu, hostUp: true }).catch((err: unknown) => {
    throw new CniError(CNI_ERR.IO, `create veth ${hostIfname} with peer ${env.ifname} in ${env.netns}: ${errorMessage(err)}`);
  });
  // Deleting the veth also removes its peer, its routes and whatever TCX links a later step attached.
  a.undo.push(() => k.deleteLink(host, hostIfname));
  const podLink = await k.linkByName(podNl, env.ifname);
  const hostLink = await k.linkByName(host, hostIfname);
  if (!podLink || !hostLink) throw new CniError(CNI_ERR.IO, `veth ${hostIfname} vanished while it was being configured`);
  await step(`mark host veth ${hostIfname}`, () => k.setLinkAlias(host, hostLink.index, k.hostVethAlias(a.socket, env.containerId, env.ifname)));
  failPoint('veth');
  return { podLink, hostLink };
}

/** Pod side: each address as a /32 or /128, the link up, a link route to the gateway and a default route via it. */
function configurePodSide(a: KernelAttempt, nl: Rtnl, index: number, ips: PodIp[]): Promise<void> {
  const dev = a.env.ifname;
  const { addAddress, addRoute, setLinkUp } = a.k;
  return step(`configure ${dev} in ${a.env.netns}`, async () => {
    for (const ip of ips) await addAddress(nl, { index, address: ip.address, prefixLength: fullPrefix(ip), dev });
    await setLinkUp(nl, index);
    // The gateway is not on any interface: from-pod answers ARP/NDP for it on the host veth.
    for (const ip of ips) {
      await addRoute(nl, { dst: `${ip.gateway}/${fullPrefix(ip)}`, index, scope: 'link', dev });
      await addRoute(nl, { dst: ip.family === 4 ? '0.0.0.0/0' : '::/0', gateway: ip.gateway, index, onlink: true, dev });
    }
  });
}

/** Host side: a /32 or /128 route to each pod address through the host veth. */
function routeToPod(a: KernelAttempt, index: number, ips: PodIp[]): Promise<void> {
  const dev = a.hostIfname;
  return step(`configure host veth ${dev}`, async () => {
    for (const ip of ips) await a.k.addRoute(a.host, { dst: `${ip.address}/${fullPrefix(ip)}`, index, scope: 'link', dev });
  });
}

/** Registers the endpoint; the agent answers once its policy is in the maps. */
async function register(a: Attempt, hostLink: Link, podLink: Link, ips: PodIp[]): Promise<void> {
  const { env } = a;
  const spec: EndpointSpec = {
    containerID: env.containerId,
    ifname: env.ifname,
    namespace: a.pod.namespace ?? '',
    pod: a.pod.name ?? '',
    netns: env.netns,
    hostIfname: a.hostIfname,
    hostIfindex: hostLink.index,
    mac: podLink.mac,
    hostMac: hostLink.mac,
    ips: ips.map((ip) => ip.address),
  };
  await agentRequest<Endpoint>(a.socket, 'PUT', '/v1/endpoints', spec).catch(toCniError('register the endpoint'));
}

/** The CNI result: a chained plugin's interfaces, addresses and routes, then ours. */
function addResult(a: Attempt, prev: CniResult | undefined, alloc: AllocateResponse, ips: PodIp[], links: { host: Link; pod: Link }, mtu: number): CniResult {
  const before = prev?.interfaces ?? [];
  const podIndex = before.length + 1;
  const dns = a.conf.dns ?? prev?.dns;
  return {
    cniVersion: a.conf.cniVersion,
    interfaces: [...before, { name: a.hostIfname, mac: links.host.mac, mtu }, { name: a.env.ifname, mac: links.pod.mac, mtu, sandbox: a.env.netns }],
    ips: [...(prev?.ips ?? []), ...alloc.ips.map((ip) => ({ address: ip.address, gateway: ip.gateway, interface: podIndex }))],
    routes: [...(prev?.routes ?? []), ...ips.map((ip) => ({ dst: ip.family === 4 ? '0.0.0.0/0' : '::/0', gw: ip.gateway }))],
    ...(dns ? { dns } : {}),
  };
}

/** Runs the undos in reverse; returns the error to throw, with whatever the rollback could not undo. */
async function rollBack(undo: Undo[], err: unknown): Promise<CniError> {
  const problems: string[] = [];
  for (const u of undo.reverse()) {
    try {
      await u();
    } catch (uerr: unknown) {
      // Best effort: the rest of the rollback must still run; what failed is told to the operator.
      problems.push(errorMessage(uerr));
    }
  }
  const e = err instanceof CniError ? err : new CniError(CNI_ERR.IO, errorMessage(err));
  if (problems.length > 0) e.details = `${e.details ? `${e.details}; ` : ''}rollback incomplete (a DEL or GC will finish it): ${problems.join('; ')}`;
  return e;
}

function fullPrefix(ip: PodIp): number {
  return ip.family === 4 ? 32 : 128;
}

async function step<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err: unknown) {
    if (err instanceof CniError || err instanceof AgentError) throw err;
    throw new CniError(CNI_ERR.IO, `${what}: ${errorMessage(err)}`);
  }
}


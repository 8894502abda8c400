/**
 * ADD: addresses from the agent (one per pool: IPv4 and/or IPv6) → veth pair
 * with the peer created inside the pod netns → pod side (address /32 or /128,
 * a link-scope route to the gateway, a default route via it, onlink) → host
 * side (up, /32 or /128 route to the pod) → TCX programs on the host veth →
 * endpoint registered with the agent. Each step arranges its own undo right
 * after it succeeds; a failure runs the undos in reverse, so a failed ADD
 * leaves nothing. A retried ADD (same container ID and ifname) gets the same
 * addresses and rebuilds the attachment, so it leaks nothing either.
 */
import { agentRequest, AgentError } from '../contract/client.ts';
import type { AllocateResponse, Endpoint, EndpointSpec, PodAddress } from '../contract/api-types.ts';
import { attachTcx, detachTcx } from '../datapath/tcx.ts';
import { addAddress, addRoute, createVeth, deleteLink, linkByName, openRtnl, setLinkUp, type Rtnl } from '../datapath/netlink.ts';
import { openNetns } from '../datapath/netns.ts';
import type { CniEnv } from './config.ts';
import { podIdentity } from './config.ts';
import { failPoint } from './fail-point.ts';
import { hostVethAlias, setLinkAlias } from './host-veth.ts';
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

/** Runs ADD; resolves with the result to print, rejects with a CniError after rolling back. */
export async function cmdAdd(env: CniEnv, conf: NetConf): Promise<CniResult> {
  const socket = agentSocket(conf);
  const pod = podIdentity(env, conf);
  const hostIfname = hostVethName(env.containerId, env.ifname);
  // A chained plugin's result is validated before anything is created.
  const prev = conf.prevResult === undefined ? undefined : parsePrevResult(conf.prevResult, conf.cniVersion);
  const undo: Undo[] = [];
  const host = openRtnl();
  let podNl: Rtnl | undefined;
  const netns = openNetns(env.netns);
  try {
    // A release queued by an earlier, failed attempt must not undo this one when the agent drains its queue:
    // this ADD re-allocates the same addresses (allocation is idempotent) and rebuilds everything else.
    unqueueDel(delQueueDir(conf), env.containerId, env.ifname);
    const alloc = await agentRequest<AllocateResponse>(socket, 'POST', '/v1/ipam/allocate', {
      containerID: env.containerId,
      ifname: env.ifname,
      namespace: pod.namespace ?? '',
      pod: pod.name ?? '',
    }).catch(toCniError('allocate an address'));
    // Unregisters the endpoint too, so it also undoes the last step; queued if the agent is gone by then.
    undo.push(() => releaseAttachment(conf, env.containerId, env.ifname, hostIfname));
    failPoint('allocate');
    if (alloc.ips.length === 0) throw new CniError(CNI_ERR.IO, 'allocate an address: the agent returned no address (does it have a pod CIDR?)');
    const ips = alloc.ips.map(splitAddress);
    // The network config wins; else the agent's (a VXLAN overlay needs room for its headers).
    const mtu = conf.mtu ?? alloc.mtu ?? DEFAULT_MTU;

    // A retried ADD finds what an interrupted one left under the same names: start clean.
    const pins = linkPins(alloc.datapath.linksDir, hostIfname);
    await deleteLink(host, hostIfname);
    detachTcx(pins.ingress);
    detachTcx(pins.egress);

    await createVeth(host, { hostName: hostIfname, peerName: env.ifname, peerNetnsFd: netns.fd, mtu, hostUp: true }).catch((err: unknown) => {
      throw new CniError(CNI_ERR.IO, `create veth ${hostIfname} with peer ${env.ifname} in ${env.netns}: ${errorMessage(err)}`);
    });
    // Deleting the veth also removes its peer, its routes and whatever TCX links a later step attached.
    undo.push(() => deleteLink(host, hostIfname));
    podNl = openRtnl(netns);
    const podLink = await linkByName(podNl, env.ifname);
    const hostLink = await linkByName(host, hostIfname);
    if (!podLink || !hostLink) throw new CniError(CNI_ERR.IO, `veth ${hostIfname} vanished while it was being configured`);
    await step(`mark host veth ${hostIfname}`, () => setLinkAlias(host, hostLink.index, hostVethAlias(socket, env.containerId, env.ifname)));
    failPoint('veth');

    const nl = podNl;
    await step(`configure ${env.ifname} in ${env.netns}`, async () => {
      for (const ip of ips) {
        const full = ip.family === 4 ? 32 : 128;
        await addAddress(nl, { index: podLink.index, address: ip.address, prefixLength: full, dev: env.ifname });
      }
      await setLinkUp(nl, podLink.index);
      // The gateway is not on any interface: from-pod answers ARP/NDP for it on the host veth.
      for (const ip of ips) {
        const full = ip.family === 4 ? 32 : 128;
        await addRoute(nl, { dst: `${ip.gateway}/${full}`, index: podLink.index, scope: 'link', dev: env.ifname });
        await addRoute(nl, { dst: ip.family === 4 ? '0.0.0.0/0' : '::/0', gateway: ip.gateway, index: podLink.index, onlink: true, dev: env.ifname });
      }
    });
    failPoint('pod-config');

    await step(`configure host veth ${hostIfname}`, async () => {
      for (const ip of ips) {
        const full = ip.family === 4 ? 32 : 128;
        await addRoute(host, { dst: `${ip.address}/${full}`, index: hostLink.index, scope: 'link', dev: hostIfname });
      }
    });
    failPoint('host-config');

    await step(`attach datapath programs to ${hostIfname}`, () => {
      attachTcx({ ifindex: hostLink.index, progPinPath: alloc.datapath.fromPod, direction: 'ingress', linkPinPath: pins.ingress });
      undo.push(() => detachTcx(pins.ingress));
      attachTcx({ ifindex: hostLink.index, progPinPath: alloc.datapath.toPod, direction: 'egress', linkPinPath: pins.egress });
      undo.push(() => detachTcx(pins.egress));
    });
    failPoint('attach');

    const spec: EndpointSpec = {
      containerID: env.containerId,
      ifname: env.ifname,
      namespace: pod.namespace ?? '',
      pod: pod.name ?? '',
      netns: env.netns,
      hostIfname,
      hostIfindex: hostLink.index,
      mac: podLink.mac,
      hostMac: hostLink.mac,
      ips: ips.map((ip) => ip.address),
    };
    await agentRequest<Endpoint>(socket, 'PUT', '/v1/endpoints', spec).catch(toCniError('register the endpoint'));
    failPoint('register');

    const before = prev?.interfaces ?? [];
    const podIndex = before.length + 1;
    return {
      cniVersion: conf.cniVersion,
      interfaces: [...before, { name: hostIfname, mac: hostLink.mac, mtu }, { name: env.ifname, mac: podLink.mac, mtu, sandbox: env.netns }],
      ips: [...(prev?.ips ?? []), ...alloc.ips.map((ip) => ({ address: ip.address, gateway: ip.gateway, interface: podIndex }))],
      routes: [...(prev?.routes ?? []), ...ips.map((ip) => ({ dst: ip.family === 4 ? '0.0.0.0/0' : '::/0', gw: ip.gateway }))],
      ...(conf.dns ? { dns: conf.dns } : prev?.dns ? { dns: prev.dns } : {}),
    };
  } catch (err: unknown) {
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
    throw e;
  } finally {
    podNl?.close();
    host.close();
    netns.close();
  }
}

async function step<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err: unknown) {
    if (err instanceof CniError || err instanceof AgentError) throw err;
    throw new CniError(CNI_ERR.IO, `${what}: ${errorMessage(err)}`);
  }
}


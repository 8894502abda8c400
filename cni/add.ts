/**
 * ADD: address from the agent → veth pair with the peer created inside the pod
 * netns → pod side (address /32, route to the gateway, default route) → host
 * side (up, /32 route to the pod) → TCX programs on the host veth → endpoint
 * registered with the agent. Each step arranges its own undo right after it
 * succeeds; a failure runs the undos in reverse, so a failed ADD leaves nothing.
 */
import { agentRequest, AgentError } from '../agent/client.ts';
import type { AllocateResponse, Endpoint, EndpointSpec } from '../agent/api-types.ts';
import { attachTcx, detachTcx } from '../datapath/tcx.ts';
import { addAddress, addRoute, createVeth, deleteLink, linkByName, openRtnl, setLinkUp } from '../datapath/netlink.ts';
import { openNetns } from '../datapath/netns.ts';
import type { CniEnv } from './config.ts';
import { podIdentity } from './config.ts';
import { CniError, CNI_ERR, type CniResult, type NetConf } from './spec.ts';
import { hostVethName, linkPins } from './names.ts';
import { agentSocket, toCniError } from './agent-errors.ts';

const DEFAULT_MTU = 1500;

type Undo = () => unknown;

/** Runs ADD; resolves with the result to print, rejects with a CniError after rolling back. */
export async function cmdAdd(env: CniEnv, conf: NetConf): Promise<CniResult> {
  const socket = agentSocket(conf);
  const pod = podIdentity(env, conf);
  const hostIfname = hostVethName(env.containerId, env.ifname);
  const mtu = conf.mtu ?? DEFAULT_MTU;
  const undo: Undo[] = [];
  const host = openRtnl();
  let podNl: ReturnType<typeof openRtnl> | undefined;
  const netns = openNetns(env.netns!);
  try {
    const alloc = await agentRequest<AllocateResponse>(socket, 'POST', '/v1/ipam/allocate', {
      containerID: env.containerId,
      ifname: env.ifname,
      namespace: pod.namespace ?? '',
      pod: pod.name ?? '',
    }).catch(toCniError('allocate an address'));
    undo.push(() => agentRequest(socket, 'POST', '/v1/ipam/release', { containerID: env.containerId, ifname: env.ifname }));

    // A retried ADD finds what an interrupted one left under the same names: start clean.
    const pins = linkPins(alloc.datapath.linksDir, hostIfname);
    await deleteLink(host, hostIfname);
    detachTcx(pins.ingress);
    detachTcx(pins.egress);

    await createVeth(host, { hostName: hostIfname, peerName: env.ifname, peerNetnsFd: netns.fd, mtu }).catch((err: unknown) => {
      throw new CniError(CNI_ERR.IO, `create veth ${hostIfname} with peer ${env.ifname} in ${env.netns}: ${message(err)}`);
    });
    // Deleting the veth also detaches whatever TCX links a later step attached.
    undo.push(() => deleteLink(host, hostIfname));

    podNl = openRtnl(env.netns!);
    const podLink = await linkByName(podNl, env.ifname);
    const hostLink = await linkByName(host, hostIfname);
    if (!podLink || !hostLink) throw new CniError(CNI_ERR.IO, `veth ${hostIfname} vanished while it was being configured`);

    const v4 = alloc.ips.filter((ip) => ip.family === 4);
    const ips = v4.map((ip) => ip.address.split('/')[0]!);
    await step(`configure ${env.ifname} in ${env.netns}`, async () => {
      for (const ip of v4) {
        const [address, prefix] = ip.address.split('/') as [string, string];
        await addAddress(podNl!, { index: podLink.index, address, prefixLength: Number(prefix) });
      }
      await setLinkUp(podNl!, podLink.index);
      // The gateway is not on any interface: from-pod answers ARP for it on the host veth.
      for (const ip of v4) {
        await addRoute(podNl!, { dst: `${ip.gateway}/32`, index: podLink.index, scope: 'link' });
        await addRoute(podNl!, { dst: 'default', gateway: ip.gateway, index: podLink.index, onlink: true });
      }
    });
    await step(`configure host veth ${hostIfname}`, async () => {
      await setLinkUp(host, hostLink.index);
      for (const ip of ips) await addRoute(host, { dst: `${ip}/32`, index: hostLink.index, scope: 'link' });
    });

    await step(`attach datapath programs to ${hostIfname}`, () => {
      attachTcx({ ifindex: hostLink.index, progPinPath: alloc.datapath.fromPod, direction: 'ingress', linkPinPath: pins.ingress });
      undo.push(() => detachTcx(pins.ingress));
      attachTcx({ ifindex: hostLink.index, progPinPath: alloc.datapath.toPod, direction: 'egress', linkPinPath: pins.egress });
      undo.push(() => detachTcx(pins.egress));
    });

    const spec: EndpointSpec = {
      containerID: env.containerId,
      ifname: env.ifname,
      namespace: pod.namespace ?? '',
      pod: pod.name ?? '',
      netns: env.netns!,
      hostIfname,
      hostIfindex: hostLink.index,
      mac: podLink.mac,
      hostMac: hostLink.mac,
      ips,
    };
    await agentRequest<Endpoint>(socket, 'PUT', '/v1/endpoints', spec).catch(toCniError('register the endpoint'));

    return {
      cniVersion: conf.cniVersion,
      interfaces: [
        { name: hostIfname, mac: hostLink.mac, mtu },
        { name: env.ifname, mac: podLink.mac, mtu, sandbox: env.netns! },
      ],
      ips: v4.map((ip) => ({ address: ip.address, gateway: ip.gateway, interface: 1 })),
      routes: v4.map((ip) => ({ dst: '0.0.0.0/0', gw: ip.gateway })),
      ...(conf.dns ? { dns: conf.dns } : {}),
    };
  } catch (err: unknown) {
    for (const u of undo.reverse()) {
      try {
        await u();
      } catch {
        // Best effort: the rest of the rollback must still run.
      }
    }
    throw err instanceof CniError ? err : new CniError(CNI_ERR.IO, message(err));
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
    throw new CniError(CNI_ERR.IO, `${what}: ${message(err)}`);
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * CHECK: compares what ADD built with what the kernel and the agent have now,
 * and fails with one line per drift: the agent's endpoint and addresses, the
 * prevResult's addresses, both veth ends (kind, peer, up, MTU, mark), the pod's
 * addresses and routes, the host routes, and the TCX programs attached.
 */
import { agentRequest, AgentUnreachableError } from '../contract/client.ts';
import type { AttachmentResponse } from '../contract/api-types.ts';
import { tcxLinkAttached } from '../datapath/tcx.ts';
import { linkByName, listAddresses, listRoutes, openRtnl, type Link, type RouteInfo, type Rtnl } from '../datapath/netlink.ts';
import { parseIp } from '../lib/ip-bytes.ts';
import type { CniEnv } from './config.ts';
import { agentMark, listLinksWithAlias } from './host-veth.ts';
import { parsePrevResult } from './result.ts';
import { agentSocket } from './agent-errors.ts';
import { hostVethName, linkPins } from './names.ts';
import { CniError, CNI_ERR, type NetConf } from './spec.ts';
import { errorMessage } from '../lib/errors.ts';

const DEFAULT_MTU = 1500;

function sameIp(a: string, b: string): boolean {
  try {
    return parseIp(a).bytes.equals(parseIp(b).bytes);
  } catch {
    return false;
  }
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.some((y) => sameIp(x, y)));
}

function hasRoute(routes: RouteInfo[], index: number, dst: string, gateway?: string): boolean {
  const [addr, len] = dst === 'default' ? ['', '0'] : (dst.split('/') as [string, string]);
  return routes.some(
    (r) =>
      r.index === index &&
      (dst === 'default' ? r.dst === 'default' : r.dst !== 'default' && r.dst.endsWith(`/${len}`) && sameIp(r.dst.split('/')[0]!, addr)) &&
      (gateway === undefined ? r.gateway === undefined : r.gateway !== undefined && sameIp(r.gateway, gateway)),
  );
}

/** Runs CHECK; resolves when everything matches, rejects with a CniError naming every drift. */
export async function cmdCheck(env: CniEnv, conf: NetConf): Promise<void> {
  const socket = agentSocket(conf);
  const hostIfname = hostVethName(env.containerId, env.ifname);
  const attachment = `${env.containerId}/${env.ifname}`;
  let agent: AttachmentResponse;
  try {
    agent = await agentRequest<AttachmentResponse>(
      socket,
      'GET',
      `/v1/endpoints/${encodeURIComponent(env.containerId)}/${encodeURIComponent(env.ifname)}`,
    );
  } catch (err: unknown) {
    const code = err instanceof AgentUnreachableError ? CNI_ERR.TRY_AGAIN_LATER : CNI_ERR.IO;
    throw new CniError(code, `CHECK ${attachment}: ask the agent: ${errorMessage(err)}`);
  }
  if (agent.endpoint === null && agent.addresses.length === 0) {
    throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `CHECK ${attachment}: the sluice agent has no endpoint and no address for this attachment (was ADD run, or has DEL or GC removed it?)`);
  }

  const drift: string[] = [];
  // As ADD chose it: the network config, else the agent's (VXLAN overlay), else the default.
  const mtu = conf.mtu ?? agent.mtu ?? DEFAULT_MTU;
  const want = agent.addresses;
  if (agent.endpoint === null) drift.push('the endpoint is not registered with the agent (the datapath does not know the pod): run DEL and ADD again');
  else if (!sameSet(agent.endpoint.ips, want)) drift.push(`the agent's endpoint has addresses ${agent.endpoint.ips.join(', ')} but IPAM holds ${want.join(', ')}`);
  if (conf.prevResult !== undefined) {
    const prev = parsePrevResult(conf.prevResult, conf.cniVersion);
    const podIndex = prev.interfaces.findIndex((i) => i.name === env.ifname && i.sandbox !== undefined);
    if (podIndex < 0) drift.push(`prevResult has no interface ${env.ifname} with a sandbox`);
    else {
      const prevIps = prev.ips.filter((ip) => ip.interface === podIndex).map((ip) => ip.address.split('/')[0]!);
      if (!sameSet(prevIps, want)) drift.push(`prevResult gives ${env.ifname} the addresses ${prevIps.join(', ') || 'none'} but the agent holds ${want.join(', ') || 'none'}`);
    }
    if (!prev.interfaces.some((i) => i.name === hostIfname && i.sandbox === undefined)) drift.push(`prevResult has no host interface ${hostIfname}`);
  }

  const host = openRtnl();
  let podNl: Rtnl | undefined;
  try {
    const hostLink = await linkByName(host, hostIfname);
    if (hostLink === null) {
      drift.push(`host veth ${hostIfname} does not exist`);
    } else {
      checkLink(drift, hostLink, `host veth ${hostIfname}`, mtu);
      const alias = (await listLinksWithAlias(host)).find((l) => l.index === hostLink.index)?.alias ?? '';
      if (!alias.startsWith(`${agentMark(socket)} `)) drift.push(`host veth ${hostIfname} does not carry this agent's mark (alias ${JSON.stringify(alias)})`);
      if (agent.endpoint !== null && agent.endpoint.hostIfindex !== hostLink.index) {
        drift.push(`the agent's endpoint points at ifindex ${agent.endpoint.hostIfindex} but host veth ${hostIfname} is ifindex ${hostLink.index}`);
      }
      const hostRoutes = await listRoutes(host);
      for (const ip of want) {
        const dst = `${ip}/${ip.includes(':') ? 128 : 32}`;
        if (!hasRoute(hostRoutes, hostLink.index, dst)) drift.push(`host route ${dst} dev ${hostIfname} is missing`);
      }
      const pins = linkPins(agent.linksDir, hostIfname);
      for (const [dir, pin] of [['ingress (from-pod)', pins.ingress], ['egress (to-pod)', pins.egress]] as const) {
        if (!tcxLinkAttached(pin)) drift.push(`no ${dir} program is attached to ${hostIfname} (link pin ${pin})`);
      }
    }

    podNl = openRtnl(env.netns);
    const podLink = await linkByName(podNl, env.ifname);
    if (podLink === null) {
      drift.push(`interface ${env.ifname} does not exist in ${env.netns}`);
    } else {
      checkLink(drift, podLink, `${env.ifname} in ${env.netns}`, mtu);
      if (hostLink !== null && podLink.peerIndex !== hostLink.index) {
        drift.push(`${env.ifname} in ${env.netns} is not the peer of host veth ${hostIfname}`);
      }
      if (agent.endpoint !== null && agent.endpoint.mac !== podLink.mac) {
        drift.push(`the agent's endpoint has MAC ${agent.endpoint.mac} but ${env.ifname} has ${podLink.mac}`);
      }
      const addrs = await listAddresses(podNl, podLink.index);
      for (const ip of want) {
        const full = ip.includes(':') ? 128 : 32;
        if (!addrs.some((a) => a.prefixLength === full && sameIp(a.address, ip))) drift.push(`address ${ip}/${full} is missing on ${env.ifname}`);
      }
      const routes = await listRoutes(podNl);
      const gateways = gatewaysOf(routes, podLink.index);
      for (const ip of want) {
        const v6 = ip.includes(':');
        const gw = gateways.find((g) => g.includes(':') === v6);
        if (gw === undefined) {
          drift.push(`the IPv${v6 ? 6 : 4} default route via the gateway is missing on ${env.ifname}`);
          continue;
        }
        if (!hasRoute(routes, podLink.index, `${gw}/${v6 ? 128 : 32}`)) drift.push(`the route to gateway ${gw} dev ${env.ifname} is missing`);
      }
    }
  } finally {
    podNl?.close();
    host.close();
  }
  if (drift.length > 0) {
    throw new CniError(
      CNI_ERR.IO,
      `CHECK ${attachment} found ${drift.length} problem(s): ${drift.join('; ')}`,
      'the pod network is not as ADD left it: delete and recreate the pod (kubelet does so when CHECK fails)',
    );
  }
}

/** The gateways of the default routes on an interface. */
function gatewaysOf(routes: RouteInfo[], index: number): string[] {
  return routes.filter((r) => r.dst === 'default' && r.index === index && r.gateway !== undefined).map((r) => r.gateway!);
}

function checkLink(drift: string[], link: Link, what: string, mtu: number): void {
  if (link.kind !== 'veth') drift.push(`${what} is a ${link.kind ?? 'device of no kind'}, not a veth`);
  if (!link.up) drift.push(`${what} is down`);
  if (link.mtu !== mtu) drift.push(`${what} has MTU ${link.mtu}, the configuration says ${mtu}`);
}

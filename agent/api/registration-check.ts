/**
 * What a registration (PUT /v1/endpoints, from the CNI ADD) must match
 * before the agent points an address at a veth: the addresses the agent
 * allocated to that container and interface, exactly; no other endpoint
 * holding one of them or the same veth; and the host veth it names, existing
 * with that index and MAC. A stale or confused caller (a retried ADD of a
 * deleted sandbox, a second plugin in a chain) otherwise could move a live
 * pod's address to another veth.
 *
 * Not checked here: that the veth's peer is in the allocation's netns
 * (reading the peer's namespace needs netlink inside it; the CNI plugin
 * created both ends itself).
 */
import { linkByName, openRtnl } from '../../datapath/netlink.ts';
import type { EndpointSpec, Endpoint } from '../../contract/api-types.ts';
import { formatIp, parseIp } from '../../lib/ip-bytes.ts';
import { ApiFailure } from './server.ts';

/** A host interface as the registration check reads it; undefined when none has that name. */
export type HostInterfaceReader = (ifname: string) => Promise<{ index: number; mac: string; kind?: string } | undefined>;

/** rtnetlink in the agent's own network namespace (a node of a multi-node local cluster has its own; /sys would show the host's). */
export const netlinkInterface: HostInterfaceReader = async (ifname) => {
  const rtnl = openRtnl();
  try {
    return (await linkByName(rtnl, ifname)) ?? undefined;
  } finally {
    rtnl.close();
  }
};

const canonical = (ip: string) => formatIp(parseIp(ip).bytes);

/** Throws ApiFailure (409, with the check that failed) unless the registration matches what the agent handed out. */
export async function checkRegistration(spec: EndpointSpec, allocated: string[], endpoints: Endpoint[], readInterface: HostInterfaceReader = netlinkInterface): Promise<void> {
  const who = `${spec.containerID}/${spec.ifname}`;
  if (allocated.length === 0) {
    throw new ApiFailure(409, 'NoAllocation', `no addresses are allocated to ${who}: only an attachment ADD allocated for may be registered`);
  }
  const mine = new Set(allocated.map(canonical));
  const asked = spec.ips.map(canonical);
  if (asked.length !== mine.size || !asked.every((ip) => mine.has(ip))) {
    throw new ApiFailure(409, 'AddressMismatch', `${who} registers ${asked.join(', ')}, but holds ${[...mine].join(', ')}: the addresses must be exactly those allocated`);
  }
  for (const e of endpoints) {
    if (e.containerID === spec.containerID && e.ifname === spec.ifname) continue;
    const shared = e.ips.map(canonical).filter((ip) => mine.has(ip));
    if (shared.length > 0) throw new ApiFailure(409, 'AddressInUse', `${shared.join(', ')} is registered to ${e.containerID}/${e.ifname} (${e.namespace}/${e.pod})`);
    if (e.hostIfindex === spec.hostIfindex || e.hostIfname === spec.hostIfname) {
      throw new ApiFailure(409, 'VethInUse', `veth ${spec.hostIfname} (ifindex ${spec.hostIfindex}) is registered to ${e.containerID}/${e.ifname} (${e.namespace}/${e.pod})`);
    }
  }
  const link = await readInterface(spec.hostIfname);
  if (link === undefined) throw new ApiFailure(409, 'NoSuchVeth', `no interface ${spec.hostIfname} in the host namespace`);
  if (link.index !== spec.hostIfindex) {
    throw new ApiFailure(409, 'VethMismatch', `${spec.hostIfname} has ifindex ${link.index}, not ${spec.hostIfindex}`);
  }
  if (link.mac.toLowerCase() !== spec.hostMac.toLowerCase()) {
    throw new ApiFailure(409, 'VethMismatch', `${spec.hostIfname} has MAC ${link.mac || 'none'}, not ${spec.hostMac}`);
  }
  if (link.kind !== undefined && link.kind !== 'veth') {
    throw new ApiFailure(409, 'VethMismatch', `${spec.hostIfname} is a ${link.kind} device, not a veth`);
  }
}

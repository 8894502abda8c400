/**
 * Destroys sockets with the kernel's sock_diag interface (NETLINK_SOCK_DIAG,
 * SOCK_DESTROY: what `ss -K` does), in the agent's own network namespace or
 * in a pod's. Used for stale Service backends: connected UDP sockets whose
 * peer left get ECONNABORTED and their owners open new ones.
 *
 * Done here rather than by running `ss` (and `nsenter` per pod netns): the
 * agent's image carries neither, and one process per pod per backend change
 * would make a change cost grow with the node's pods. The structures are
 * those of linux/inet_diag.h and linux/sock_diag.h.
 */
import { openNetlink, type Rtnl } from './rtnl.ts';
import { NLM_F_DUMP } from './rtnl-uapi.ts';
import type { NetnsHandle } from './netns.ts';
import { parseIp } from '../lib/ip-bytes.ts';

/** Netlink protocol of sock_diag. */
export const NETLINK_SOCK_DIAG = 4;
/** Message types (linux/sock_diag.h). */
const SOCK_DIAG_BY_FAMILY = 20;
const SOCK_DESTROY = 21;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_UDP = 17;
/** Every TCP-like state: a connected UDP socket is ESTABLISHED, an unconnected one CLOSE. */
const ALL_STATES = 0xffffffff;
/** struct inet_diag_req_v2: family, protocol, ext, pad, states, then struct inet_diag_sockid. */
const REQ_BYTES = 56;
const REQ_ID_OFFSET = 8;
/** struct inet_diag_sockid: sport, dport (big-endian), src[16], dst[16], if, cookie[2]. */
const SOCKID_BYTES = 48;
const SOCKID = { sport: 0, dport: 2, src: 4, dst: 20 } as const;
/** struct inet_diag_msg: family, state, timer, retrans, then the sockid. */
const MSG_ID_OFFSET = 4;

/** A peer whose connected UDP sockets go. */
export interface UdpPeer {
  address: string;
  port: number;
}

function request(family: number, id?: Buffer): Buffer {
  const req = Buffer.alloc(REQ_BYTES);
  req.writeUInt8(family, 0);
  req.writeUInt8(IPPROTO_UDP, 1);
  req.writeUInt32LE(ALL_STATES, 4);
  id?.copy(req, REQ_ID_OFFSET, 0, SOCKID_BYTES);
  return req;
}

/** The sockets' ids (struct inet_diag_sockid) of one family whose peer is one of `peers`. */
async function connectedTo(nl: Rtnl, family: number, peers: UdpPeer[]): Promise<Buffer[]> {
  const len = family === AF_INET ? 4 : 16;
  const wanted = new Set(peers.map((p) => `${Buffer.from(parseIp(p.address).bytes).toString('hex')}:${p.port}`));
  const replies = await nl.request(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, [request(family)], `list UDP sockets (family ${family})`);
  const out: Buffer[] = [];
  for (const r of replies) {
    if (r.type !== SOCK_DIAG_BY_FAMILY || r.data.length < MSG_ID_OFFSET + SOCKID_BYTES) continue;
    const id = r.data.subarray(MSG_ID_OFFSET, MSG_ID_OFFSET + SOCKID_BYTES);
    const key = `${id.subarray(SOCKID.dst, SOCKID.dst + len).toString('hex')}:${id.readUInt16BE(SOCKID.dport)}`;
    if (wanted.has(key)) out.push(Buffer.from(id));
  }
  return out;
}

/**
 * Destroys the UDP sockets connected to any of `peers` in the agent's
 * network namespace, or in `netns`; resolves with how many went. Rejects
 * with a NetlinkError (e.g. the kernel lacks CONFIG_INET_DIAG_DESTROY).
 */
export async function destroyUdpSocketsTo(peers: UdpPeer[], netns?: string | NetnsHandle): Promise<number> {
  if (peers.length === 0) return 0;
  const nl = openNetlink(NETLINK_SOCK_DIAG, netns);
  try {
    let destroyed = 0;
    for (const family of [AF_INET, AF_INET6]) {
      const ofFamily = peers.filter((p) => (family === AF_INET) === !p.address.includes(':'));
      if (ofFamily.length === 0) continue;
      for (const id of await connectedTo(nl, family, ofFamily)) {
        try {
          await nl.request(SOCK_DESTROY, 0, [request(family, id)], 'destroy a UDP socket');
          destroyed++;
        } catch (err: unknown) {
          // Closed by its owner between the dump and now.
          if ((err as { code?: string }).code !== 'ENOENT') throw err;
        }
      }
    }
    return destroyed;
  } finally {
    nl.close();
  }
}

/**
 * Names the plugin derives from the attachment key (container ID + ifname).
 * Deriving them means DEL, CHECK and a retried ADD find exactly what ADD made,
 * and nothing else: the plugin never touches a link or pin it did not name.
 */
import { sha256Hex } from '../lib/sha256-hex.ts';

const HOST_VETH_PREFIX = 'lxc';
/** 3 + 11 = 14 bytes, within IFNAMSIZ - 1 = 15. */
const HOST_VETH_HASH_CHARS = 11;

/** The host-side veth name of an attachment, e.g. lxc3f2a9c01b7e. */
export function hostVethName(containerID: string, ifname: string): string {
  const hash = sha256Hex(`${containerID}/${ifname}`);
  return HOST_VETH_PREFIX + hash.slice(0, HOST_VETH_HASH_CHARS);
}

/** The bpffs paths of an attachment's two TCX links under the agent's links directory. */
export function linkPins(linksDir: string, hostIfname: string): { ingress: string; egress: string } {
  return { ingress: `${linksDir}/${hostIfname}_ingress`, egress: `${linksDir}/${hostIfname}_egress` };
}

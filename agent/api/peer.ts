/**
 * Who is on the other end of an API connection: SO_PEERCRED of the Unix
 * socket (the pid, uid and gid of the process that connected, as the kernel
 * recorded them at connect time; the peer cannot forge them). Node exposes
 * no peer credentials, so getsockopt is called through koffi, the FFI the
 * datapath already uses, on the connection's file descriptor.
 */
import type net from 'node:net';
import fs from 'node:fs';
import koffi from 'koffi';

/** The kernel's struct ucred. */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const UCRED_BYTES = 12;

type GetsockoptFn = (fd: number, level: number, name: number, value: Buffer, length: Buffer) => number;
let getsockopt: GetsockoptFn | undefined;

/** The peer of a connection on a Unix socket; null when the kernel cannot say (no descriptor, not a Unix socket). */
export function peerCredentials(socket: net.Socket): PeerCredentials | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  getsockopt ??= koffi.load('libc.so.6').func('int getsockopt(int fd, int level, int name, void *value, void *length)') as GetsockoptFn;
  const value = Buffer.alloc(UCRED_BYTES);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(UCRED_BYTES);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, value, length) !== 0 || length.readUInt32LE() < UCRED_BYTES) return null;
  return { pid: value.readInt32LE(0), uid: value.readUInt32LE(4), gid: value.readUInt32LE(8) };
}

/** Who may change the node's state through the API, and who may read it. */
export interface ApiAccess {
  /** The socket's group (--socket-group): its members may connect and use the read verbs (GET). */
  gid: number | null;
  /** Besides root, the uids that may use the verbs that change state (--write-uid). */
  writerUids: number[];
}

/** May this peer call a verb that changes state? Root, or a uid given by --write-uid; an unknown peer may not. */
export function mayWrite(peer: PeerCredentials | null, access: ApiAccess): boolean {
  return peer !== null && (peer.uid === 0 || access.writerUids.includes(peer.uid));
}

/** The gid of a group name (/etc/group) or number; throws for one that does not exist. */
export function groupId(nameOrGid: string, groupFile = '/etc/group'): number {
  if (/^\d+$/.test(nameOrGid)) return Number(nameOrGid);
  for (const line of fs.readFileSync(groupFile, 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === nameOrGid && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new Error(`--socket-group '${nameOrGid}': no such group in ${groupFile}`);
}

// An rtnetlink socket (NETLINK_ROUTE) in the current or a given network namespace, with requests that
// turn kernel errors into NetlinkError values carrying the operation, `.code` ('EEXIST') and `.errno`.
// The socket and request/reply matching come from the `netlink` package (only its core module is imported:
// the full package costs ~20 ms more to load); messages are encoded in link.ts, address.ts, route.ts,
// neighbor.ts, with the numbers of rtnl-uapi.ts.
import { createNetlink, type NetlinkSocket } from 'netlink/dist/netlink.js';
import { getSystemErrorName } from 'node:util';
import { withNetns, type NetnsHandle } from './netns.ts';
import { NLMSG_ERROR } from './rtnl-uapi.ts';

/** Netlink protocol number of rtnetlink (NETLINK_ROUTE). */
export const NETLINK_ROUTE = 0;
/** A request that gets no reply within this time fails with code 'ETIMEDOUT'. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** An rtnetlink error: `code` is the errno name ('EEXIST', 'ENODEV', 'ESRCH', ...), `errno` its number. */
export class NetlinkError extends Error {
  code: string;
  errno: number;
  constructor(message: string, code: string, errno: number) {
    super(message);
    this.name = 'NetlinkError';
    this.code = code;
    this.errno = errno;
  }
}

/** Returns true when `err` is a NetlinkError (or any error) whose `.code` is `code`. */
export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** A reply message: its type and payload (after the nlmsghdr). */
export interface RtnlReply {
  type: number;
  data: Buffer;
}

/** An rtnetlink socket bound to one network namespace. Requests are serialized; close() when done. */
export interface Rtnl {
  /** Where this socket lives ('' for the namespace of the caller at open time), for messages. */
  readonly netns: string;
  /**
   * Sends one request (NLM_F_REQUEST|NLM_F_ACK plus `flags`) and resolves with the reply messages
   * (none for a plain ACK, all parts of a dump). Rejects with a NetlinkError "`what`: CODE".
   */
  request(type: number, flags: number, payload: readonly Uint8Array[], what: string): Promise<RtnlReply[]>;
  /** Closes the socket; pending requests are abandoned. Idempotent. */
  close(): void;
}

/**
 * Opens an rtnetlink socket in the current namespace, or inside `netns` (a path or an open handle) by
 * entering it just long enough to create the socket. The socket never keeps the process alive while
 * idle (it is referenced only while a request is pending). Throws NetnsError/NetlinkError on failure.
 */
export function openRtnl(netns?: string | NetnsHandle): Rtnl {
  return openNetlink(NETLINK_ROUTE, netns);
}

/** Like openRtnl, for another netlink protocol (NETLINK_SOCK_DIAG, ...): the same requests and errors. */
export function openNetlink(protocol: number, netns?: string | NetnsHandle): Rtnl {
  const create = (): NetlinkSocket => createNetlink(protocol, { ref: false } as Parameters<typeof createNetlink>[1]);
  const socket = netns === undefined ? create() : withNetns(netns, create);
  const where = netns === undefined ? '' : typeof netns === 'string' ? netns : netns.path;
  return new RtnlSocket(socket, where);
}

class RtnlSocket implements Rtnl {
  readonly netns: string;
  #socket: NetlinkSocket;
  #closed = false;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(socket: NetlinkSocket, netns: string) {
    this.#socket = socket;
    this.netns = netns;
    // errors are reported through the pending request; never crash on an unhandled 'error' event
    socket.on('error', () => {});
  }

  request(type: number, flags: number, payload: readonly Uint8Array[], what: string): Promise<RtnlReply[]> {
    const context = this.netns === '' ? what : `${what} (netns ${this.netns})`;
    // One request in flight at a time: the library groups dump parts per socket, not per sequence number.
    const run = (): Promise<RtnlReply[]> => this.#send(type, flags, payload, context);
    const result = this.#tail.then(run, run);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  async #send(type: number, flags: number, payload: readonly Uint8Array[], context: string): Promise<RtnlReply[]> {
    if (this.#closed) throw new NetlinkError(`${context}: socket closed`, 'EBADF', 9);
    let messages;
    try {
      [messages] = await this.#socket.request(type, payload as Uint8Array[], {
        flags,
        checkError: false,
        timeout: REQUEST_TIMEOUT_MS,
      });
    } catch (err: unknown) {
      const e = err as { code?: unknown; errno?: unknown; message?: unknown };
      const timedOut = /Timeout/.test(String(e.message));
      const code = typeof e.code === 'string' ? e.code : timedOut ? 'ETIMEDOUT' : 'EIO';
      const errno = typeof e.errno === 'number' ? e.errno : timedOut ? 110 : 5;
      throw new NetlinkError(`${context}: ${code}`, code, errno);
    }
    const replies: RtnlReply[] = [];
    for (const m of messages) {
      if (m.type === NLMSG_ERROR) {
        // struct nlmsgerr: int error (negative errno, 0 for an ACK), then the offending header
        const errno = -m.data.readInt32LE(0);
        if (errno === 0) continue;
        throw new NetlinkError(`${context}: ${errnoName(errno)}`, errnoName(errno), errno);
      }
      replies.push({ type: m.type, data: m.data });
    }
    return replies;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
  }
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `E${errno}`;
  }
}

/**
 * The agent's API server: HTTP/JSON on a unix socket, root-only unless a
 * group is given (--socket-group), whose members may read (GET) but never
 * change the node's state: every other verb checks the peer's credentials
 * (SO_PEERCRED, peer.ts). Routing is a table of method + path pattern →
 * handler; handlers throw ApiFailure for errors a caller should see.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { ApiError } from '../../contract/api-types.ts';
import { errorMessage } from '../../lib/errors.ts';
import { mayWrite, peerCredentials, type ApiAccess, type PeerCredentials } from './peer.ts';

const MAX_BODY_BYTES = 1 << 20;

/** An error with the HTTP status and kind the client receives. */
export class ApiFailure extends Error {
  readonly status: number;
  readonly kind: string;
  constructor(status: number, kind: string, message: string) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

/**
 * A streaming answer (e.g. the monitor): the handler returns one of these and
 * the server keeps the response open, writing NDJSON lines until the client
 * goes away, when `stop` runs.
 */
/** Bytes a stream may have queued for a slow reader; past them, lines are not written and writeLine says false. */
export const STREAM_QUEUE_LIMIT_BYTES = 4 << 20;

/** Writes one line of a stream; false when the reader is too slow and the line was left out. */
export type WriteLine = (value: unknown) => boolean;

export class StreamResponse {
  readonly start: (writeLine: WriteLine) => () => void;
  constructor(start: (writeLine: WriteLine) => () => void) {
    this.start = start;
  }
}

/** A route handler: gets path parameters, the query and the parsed body. */
export type Handler = (req: { params: string[]; query: URLSearchParams; body: unknown }) => unknown | Promise<unknown>;

/** One route: method and a path pattern whose `:name` segments become params. */
export interface Route {
  method: string;
  pattern: string;
  handler: Handler;
}

function match(pattern: string, pathname: string): string[] | null {
  const want = pattern.split('/');
  const got = pathname.split('/');
  if (want.length !== got.length) return null;
  const params: string[] = [];
  for (let i = 0; i < want.length; i++) {
    if (want[i]!.startsWith(':')) params.push(decodeURIComponent(got[i]!));
    else if (want[i] !== got[i]) return null;
  }
  return params;
}

async function readBody(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ApiFailure(413, 'BadRequest', 'request body too large');
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ApiFailure(400, 'BadRequest', 'request body is not JSON');
  }
}

/** Fails when the socket is held by a live process; removes a stale socket file. */
async function clearStaleSocket(socket: string): Promise<void> {
  if (!fs.existsSync(socket)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(socket);
    c.on('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
  if (alive) throw new Error(`another agent is already serving ${socket}`);
  fs.unlinkSync(socket);
}

/** Observes each answered (non-streaming) request: the route pattern matched (null: none), status and handling time. */
export type RequestObserver = (method: string, pattern: string | null, status: number, durationMs: number) => void;

/** Serves the routes on a unix socket readable and writable by root only; resolves once listening. */
export async function serveApi(
  socket: string,
  routes: Route[],
  log: (msg: string) => void,
  options: {
    onRequest?: RequestObserver;
    mapError?: (err: unknown) => ApiFailure | null;
    /** Who may read and who may write; default: root alone, the socket 0600. */
    access?: ApiAccess;
    /** A verb that changes state was refused to peer. */
    onRefused?: (route: string, peer: PeerCredentials | null) => void;
  } = {},
): Promise<http.Server> {
  const access = options.access ?? { gid: null, writerUids: [] };
  fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
  await clearStaleSocket(socket);
  const server = http.createServer(async (req, res) => {
    const startedMs = performance.now();
    const url = new URL(req.url ?? '/', 'http://agent');
    let status = 200;
    let body: unknown;
    let route: Route | undefined;
    try {
      route = routes.find((r) => r.method === req.method && match(r.pattern, url.pathname));
      if (!route) throw new ApiFailure(404, 'NotFound', `no such API: ${req.method} ${url.pathname}`);
      // Reading is for the socket's group; changing the node (allocate, release, register, sync...) for root.
      if (route.method !== 'GET') {
        const peer = peerCredentials(req.socket);
        if (!mayWrite(peer, access)) {
          const verb = `${route.method} ${route.pattern}`;
          const who = peer ? `uid ${peer.uid} (pid ${peer.pid})` : 'a caller whose credentials the kernel did not give';
          log(`API ${verb} refused to ${who}: it changes the node's state`);
          options.onRefused?.(verb, peer);
          throw new ApiFailure(403, 'Forbidden', `${verb} changes the node's state: only root${access.writerUids.length ? ` or uid ${access.writerUids.join(', ')}` : ''} may call it, not ${who}`);
        }
      }
      body = await route.handler({ params: match(route.pattern, url.pathname)!, query: url.searchParams, body: await readBody(req) });
    } catch (thrown: unknown) {
      // e.g. a refused disk write: an error the caller can act on, not an internal one.
      const err = thrown instanceof ApiFailure ? thrown : options.mapError?.(thrown) ?? thrown;
      status = err instanceof ApiFailure ? err.status : 500;
      const out: ApiError = {
        error: errorMessage(err),
        kind: err instanceof ApiFailure ? err.kind : 'Internal',
      };
      if (status === 500) log(`API ${req.method} ${url.pathname} failed: ${out.error}`);
      body = out;
    }
    if (body instanceof StreamResponse) {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const stop = body.start((value) => {
        // A reader that does not keep up loses lines, rather than growing the agent's memory.
        if (res.writableLength > STREAM_QUEUE_LIMIT_BYTES) return false;
        res.write(JSON.stringify(value) + '\n');
        return true;
      });
      res.on('close', stop);
      return;
    }
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    options.onRequest?.(req.method ?? '', route?.pattern ?? null, status, performance.now() - startedMs);
  });
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socket, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  if (access.gid === null) {
    fs.chmodSync(socket, 0o600);
  } else {
    // The group may connect (and so read); what it may change is decided per request, by its credentials.
    fs.chownSync(socket, 0, access.gid);
    fs.chmodSync(socket, 0o660);
    const dir = path.dirname(socket);
    fs.chownSync(dir, 0, access.gid);
    fs.chmodSync(dir, 0o750);
  }
  return server;
}

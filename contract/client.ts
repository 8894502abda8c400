/**
 * Client of the agent's API: HTTP/JSON over the agent's unix socket. Used by
 * the CNI plugin (kept light: only node:http) and by the CLI.
 */
import http from 'node:http';
import net from 'node:net';
import type { ApiError } from './api-types.ts';

const REQUEST_TIMEOUT_MS = 30_000;

/** The agent answered with an error status. */
export class AgentError extends Error {
  readonly status: number;
  readonly kind: string;
  constructor(status: number, body: ApiError) {
    super(body.error);
    this.name = 'AgentError';
    this.status = status;
    this.kind = body.kind;
  }
}

/** The agent could not be reached (no socket, refused, timed out). */
export class AgentUnreachableError extends Error {
  readonly code: string;
  constructor(socket: string, cause: NodeJS.ErrnoException) {
    super(`cannot reach the sluice agent at ${socket}: ${cause.code ?? cause.message} (is sluice-agent running on this node?)`);
    this.name = 'AgentUnreachableError';
    this.code = cause.code ?? 'EUNKNOWN';
  }
}

/** Sends one request; resolves with the parsed JSON body, rejects with AgentError or AgentUnreachableError. */
export function agentRequest<T>(socket: string, method: string, path: string, body?: unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        // A connection of our own and no http.Agent: the agent's server-name logic
        // compiles the IPv6 regex (~7 ms), a cost every CNI invocation would pay.
        createConnection: () => net.connect(socket),
        host: 'sluice-agent',
        method,
        path,
        timeout: REQUEST_TIMEOUT_MS,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            reject(new Error(`agent sent a malformed response to ${method} ${path}`));
            return;
          }
          if ((res.statusCode ?? 500) >= 400) reject(new AgentError(res.statusCode ?? 500, parsed as ApiError));
          else resolve(parsed as T);
        });
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => reject(new AgentUnreachableError(socket, err)));
    req.end(payload);
  });
}

/** Opens a streaming (NDJSON) request; calls onValue per line until the returned function is called or the agent closes. */
export function agentStream(socket: string, path: string, onValue: (value: unknown) => void, onEnd: (err?: Error) => void): () => void {
  const req = http.request({ createConnection: () => net.connect(socket), host: 'sluice-agent', method: 'GET', path }, (res) => {
    if ((res.statusCode ?? 500) >= 400) {
      onEnd(new Error(`agent answered ${res.statusCode} to GET ${path}`));
      res.resume();
      return;
    }
    let pending = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line) onValue(JSON.parse(line));
      }
    });
    res.on('end', () => onEnd());
  });
  req.on('error', (err: NodeJS.ErrnoException) => onEnd(new AgentUnreachableError(socket, err)));
  req.end();
  return () => req.destroy();
}

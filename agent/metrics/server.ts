/**
 * Serves the agent's metrics over HTTP on a TCP address (--metrics-address):
 * GET /metrics in the Prometheus text format. A metrics address that cannot
 * be bound is logged and metrics stay off: the datapath matters more.
 */
import http from 'node:http';
import type { AgentMetrics } from './metrics.ts';
import { errorMessage } from '../../lib/errors.ts';

/** Default --metrics-address: local scrapers only (hostNetwork pods share the node's addresses). */
export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9962';

/** Where metrics are served. */
export interface MetricsAddress {
  host: string;
  port: number;
}

/** Parses HOST:PORT or [V6]:PORT; '0' or '' disable metrics (null). Throws on anything else. */
export function parseMetricsAddress(text: string): MetricsAddress | null {
  if (text === '' || text === '0') return null;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 0 || port > 65535) throw new Error(`--metrics-address '${text}' must be HOST:PORT (e.g. ${DEFAULT_METRICS_ADDRESS}), or 0 to disable`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** Formats an address as HOST:PORT (brackets around IPv6). */
export function formatMetricsAddress(a: MetricsAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Listens on address; resolves with the server and the address bound (port 0 → the one chosen), or null when listening failed. */
export async function serveMetrics(
  address: MetricsAddress,
  metrics: AgentMetrics,
  log: (msg: string) => void,
): Promise<{ server: http.Server; bound: MetricsAddress } | null> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://metrics');
    if (req.method !== 'GET' || url.pathname !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: GET /metrics\n');
      return;
    }
    metrics.render().then(
      (text) => {
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(text);
      },
      (err: unknown) => {
        const msg = errorMessage(err);
        log(`metrics: scrape failed: ${msg}`);
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`scrape failed: ${msg}\n`);
      },
    );
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, address.host, () => resolve());
    });
  } catch (err: unknown) {
    const code = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
    log(`metrics: cannot listen on ${formatMetricsAddress(address)}: ${code}; metrics are off`);
    return null;
  }
  const info = server.address();
  const bound = typeof info === 'object' && info ? { host: address.host, port: info.port } : address;
  return { server, bound };
}

/**
 * The HTTP server of `sluice ui`: the page, and the JSON it polls. One
 * FlowView per filter set the page asks for (shared by tabs with the same
 * filters, stopped when no page has asked for a minute), each fed by the
 * agent's /v1/flows with those filters.
 *
 *   GET /                     the page
 *   GET /api/view?<filters>   { map (with its layout), flows (newest first), feed, windowSec }
 *   GET /api/map?<filters>    the map alone
 *   GET /api/flows?<filters>&last=N   the agent's FlowsResponse, as is
 */
import http from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { errorMessage } from '../lib/errors.ts';
import { FlowView, filterQuery, type FeedState, type FlowSource } from './flow-view.ts';
import { layoutMap, type MapLayout } from './layout.ts';
import { PAGE_HTML } from './page.ts';
import type { FlowRecord } from '../contract/flows.ts';
import type { ServiceMapSnapshot } from './service-map.ts';

const MAX_VIEWS = 8;
const VIEW_IDLE_MS = 60_000;
const SWEEP_INTERVAL_MS = 10_000;
const PODS_INTERVAL_MS = 5_000;
const TABLE_ROWS = 100;

/** What /api/view answers. */
export interface UiView {
  map: ServiceMapSnapshot & { layout: MapLayout };
  flows: FlowRecord[];
  feed: FeedState;
  /** The filters applied, as a query string. */
  filter: string;
}

/** What the server needs. */
export interface UiServerOptions {
  source: FlowSource;
  /** The sliding window of the rates (ms). */
  windowMs: number;
  /** The pods to draw even without traffic (the agent's endpoints); none when absent. */
  pods?: () => Promise<{ namespace: string; pod: string }[]>;
}

/** A running server: its URL, and close(). */
export interface UiServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Whether a request names this server by address or as localhost. Anything else is a page
 * elsewhere that had its own name resolve to this machine (DNS rebinding), which must not
 * read this node's flows.
 */
export function hostAllowed(hostHeader: string | undefined): boolean {
  if (!hostHeader) return false;
  let host: string;
  try {
    host = new URL(`http://${hostHeader}`).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return false;
  }
  return host === 'localhost' || isIP(host) !== 0;
}

/** Known pods go into a view only when its filters are no more than a namespace and a pod that they match. */
function podsFor(filter: URLSearchParams, pods: { namespace: string; pod: string }[]): { namespace: string; pod: string }[] {
  if ([...filter.keys()].some((k) => k !== 'namespace' && k !== 'pod')) return [];
  const ns = filter.get('namespace');
  const pod = filter.get('pod');
  return pods.filter((p) => (!ns || p.namespace === ns) && (!pod || pod === `${p.namespace}/${p.pod}` || (!pod.includes('/') && pod === p.pod)));
}

/** Starts the server on host:port (port 0: any free one); resolves once it listens. */
export async function startUiServer(host: string, port: number, options: UiServerOptions): Promise<UiServer> {
  const views = new Map<string, FlowView>();
  let pods: { namespace: string; pod: string }[] = [];

  const viewFor = (params: URLSearchParams): FlowView => {
    const filter = filterQuery(params);
    const key = filter.toString();
    let view = views.get(key);
    if (!view) {
      if (views.size >= MAX_VIEWS) {
        const oldest = [...views.entries()].sort(([, a], [, b]) => a.lastUsedMs - b.lastUsedMs)[0]!;
        oldest[1].stop();
        views.delete(oldest[0]);
      }
      view = new FlowView(options.source, filter, options.windowMs);
      view.map.setKnownPods(podsFor(filter, pods));
      view.start();
      views.set(key, view);
    }
    view.lastUsedMs = Date.now();
    return view;
  };
  const mapOf = (view: FlowView) => {
    const snapshot = view.map.snapshot(Date.now());
    return { ...snapshot, layout: layoutMap(snapshot.nodes) };
  };

  const sweep = setInterval(() => {
    for (const [key, view] of views) {
      if (Date.now() - view.lastUsedMs > VIEW_IDLE_MS) {
        view.stop();
        views.delete(key);
      }
    }
  }, SWEEP_INTERVAL_MS);
  const refreshPods = async () => {
    if (!options.pods) return;
    try {
      pods = await options.pods();
      for (const view of views.values()) view.map.setKnownPods(podsFor(view.filter, pods));
    } catch {
      // The flow feed reports an agent that is away; the pods wait for the next round.
    }
  };
  void refreshPods();
  const podTimer = setInterval(() => void refreshPods(), PODS_INTERVAL_MS);

  const send = (res: http.ServerResponse, status: number, type: string, body: string) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  const json = (res: http.ServerResponse, status: number, value: unknown) => send(res, status, 'application/json', JSON.stringify(value));

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://ui');
    if (!hostAllowed(req.headers.host)) return json(res, 403, { error: 'open the map by address (http://127.0.0.1:PORT/) or as localhost' });
    if (req.method !== 'GET') return json(res, 405, { error: `${req.method} is not served` });
    switch (url.pathname) {
      case '/':
        return send(res, 200, 'text/html; charset=utf-8', PAGE_HTML);
      case '/api/view': {
        const view = viewFor(url.searchParams);
        const body: UiView = { map: mapOf(view), flows: view.recent(TABLE_ROWS), feed: view.feedState(), filter: view.filter.toString() };
        return json(res, 200, body);
      }
      case '/api/map':
        return json(res, 200, mapOf(viewFor(url.searchParams)));
      case '/api/flows': {
        const q = filterQuery(url.searchParams);
        q.set('last', url.searchParams.get('last') ?? String(TABLE_ROWS));
        options.source.fetch(q).then(
          (flows) => json(res, 200, flows),
          (err: unknown) => json(res, 502, { error: errorMessage(err) }),
        );
        return undefined;
      }
      default:
        return json(res, 404, { error: `${url.pathname}: no such page` });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}/`,
    close: async () => {
      clearInterval(sweep);
      clearInterval(podTimer);
      for (const view of views.values()) view.stop();
      views.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A small fake Kubernetes API server speaking the list/watch protocol over
 * plain HTTP: paged lists with resourceVersions, watch streams with
 * bookmarks, 410 Gone for compacted history (as an ERROR event or an HTTP
 * status), injected failures and dropped connections. It also takes the
 * core/v1 Events the agent writes (create, 409 on a name taken, merge patch)
 * and keeps them in kubeEvents. For the datastore's
 * edge-case tests; everything else runs against a real API server (make e2e).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

interface Obj {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}

interface Event {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  collection: string;
  object: Obj;
}

interface Watcher {
  collection: string;
  res: http.ServerResponse;
}

/** Collection path → kind. */
const COLLECTIONS: Record<string, { kind: string; apiVersion: string }> = {
  '/api/v1/pods': { kind: 'Pod', apiVersion: 'v1' },
  '/api/v1/namespaces': { kind: 'Namespace', apiVersion: 'v1' },
  '/api/v1/nodes': { kind: 'Node', apiVersion: 'v1' },
  '/apis/networking.k8s.io/v1/networkpolicies': { kind: 'NetworkPolicy', apiVersion: 'networking.k8s.io/v1' },
  '/api/v1/services': { kind: 'Service', apiVersion: 'v1' },
  '/api/v1/endpoints': { kind: 'Endpoints', apiVersion: 'v1' },
  '/apis/discovery.k8s.io/v1beta1/endpointslices': { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1beta1' },
};

function keyOf(o: Obj): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** The fake server and the knobs tests turn. */
export class FakeKubeApi {
  private server: http.Server;
  private readonly sockets = new Set<Socket>();
  private rv = 100;
  private readonly stores = new Map<string, Map<string, Obj>>();
  private events: Event[] = [];
  /** Events with rv ≤ this are forgotten: watching from before it gets 410. */
  private compactedRv = 0;
  private watchers: Watcher[] = [];
  /** Every request, for assertions: path, and the query. */
  readonly requests: { path: string; query: URLSearchParams }[] = [];
  /** Fail this many of the next list requests with 500. */
  failLists = 0;
  /** Answer an expired watch with HTTP 410 instead of a 200 stream carrying an ERROR event. */
  goneAsHttpStatus = false;
  /** Pods (namespace/name) whose events are withheld from watches (a watch lagging behind a GET). */
  readonly hiddenFromWatch = new Set<string>();
  /**
   * Pods (namespace/name) the server does not show yet, as a slow API server
   * behind the kubelet: absent from lists and watches, and a direct GET
   * answers 504. releasePod() shows one.
   */
  readonly withheldPods = new Set<string>();
  /** core/v1 Events written to this server, by namespace/name, as last patched. */
  readonly kubeEvents = new Map<string, Obj>();
  /** Fail this many of the next Event writes with 500. */
  failEventWrites = 0;
  /** Collections this server does not serve (404), e.g. an API group a newer Kubernetes removed. */
  readonly missingCollections = new Set<string>();
  port = 0;

  constructor() {
    for (const c of Object.keys(COLLECTIONS)) this.stores.set(c, new Map());
    this.server = this.makeServer();
  }

  private makeServer(): http.Server {
    const server = http.createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    return server;
  }

  /** Listens on 127.0.0.1 (the same port as before after a restart). */
  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return `http://127.0.0.1:${this.port}`;
  }

  /** Closes the server and every connection (a crash or restart of the API server). */
  async close(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    this.watchers = [];
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server = this.makeServer();
  }

  /** Cuts every open watch stream (a network blip); lists still work. */
  dropWatches(): void {
    for (const w of this.watchers) w.res.socket?.destroy();
    this.watchers = [];
  }

  /** Forgets all history up to now: watches from an older resourceVersion get 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    this.events = [];
  }

  /** Sends a BOOKMARK with the current resourceVersion to every open watch; returns it. */
  bookmark(): string {
    for (const w of this.watchers) {
      const { kind, apiVersion } = COLLECTIONS[w.collection]!;
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind, apiVersion, metadata: { resourceVersion: String(this.rv) } } })}\n`);
    }
    return String(this.rv);
  }

  /** Number of open watch streams. */
  openWatches(): number {
    return this.watchers.length;
  }

  /** Creates or replaces an object; returns its resourceVersion. */
  put(collection: string, obj: Obj): string {
    const store = this.stores.get(collection)!;
    const { kind, apiVersion } = COLLECTIONS[collection]!;
    const stored: Obj = structuredClone({ ...obj, kind, apiVersion });
    const type = store.has(keyOf(stored)) ? 'MODIFIED' : 'ADDED';
    stored.metadata.resourceVersion = String(++this.rv);
    store.set(keyOf(stored), stored);
    this.emit({ rv: this.rv, type, collection, object: stored });
    return String(this.rv);
  }

  /** Shows a withheld pod: watches get it as a modification (new resourceVersion), lists and GETs return it. */
  releasePod(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    this.withheldPods.delete(key);
    const pod = this.stores.get('/api/v1/pods')!.get(key);
    if (pod) this.put('/api/v1/pods', pod);
  }

  /** Deletes an object; false when absent. */
  delete(collection: string, namespace: string | undefined, name: string): boolean {
    const store = this.stores.get(collection)!;
    const key = namespace ? `${namespace}/${name}` : name;
    const old = store.get(key);
    if (!old) return false;
    store.delete(key);
    const gone: Obj = structuredClone(old);
    gone.metadata.resourceVersion = String(++this.rv);
    this.emit({ rv: this.rv, type: 'DELETED', collection, object: gone });
    return true;
  }

  private emit(e: Event): void {
    this.events.push(e);
    if (this.hidden(e)) return;
    for (const w of this.watchers) if (w.collection === e.collection) w.res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
  }

  private hidden(e: Event): boolean {
    return e.collection === '/api/v1/pods' && (this.hiddenFromWatch.has(keyOf(e.object)) || this.withheldPods.has(keyOf(e.object)));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push({ path: url.pathname, query: url.searchParams });
    const events = /^\/api\/v1\/namespaces\/([^/]+)\/events(?:\/([^/]+))?$/.exec(url.pathname);
    if (events && (req.method === 'POST' || req.method === 'PATCH')) {
      void readBody(req).then((body) => this.writeEvent(req.method!, decodeURIComponent(events[1]!), events[2] && decodeURIComponent(events[2]), body, res));
      return;
    }
    const single = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(url.pathname);
    if (single) {
      const key = `${decodeURIComponent(single[1]!)}/${decodeURIComponent(single[2]!)}`;
      if (this.withheldPods.has(key)) return this.status(res, 504, 'Timeout', 'the server was unable to return a response in the time allotted');
      const pod = this.stores.get('/api/v1/pods')!.get(key);
      if (!pod) return this.status(res, 404, 'NotFound', 'pods not found');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(pod));
      return;
    }
    const collection = this.missingCollections.has(url.pathname) ? undefined : COLLECTIONS[url.pathname];
    if (!collection) return this.status(res, 404, 'NotFound', `no collection ${url.pathname}`);
    if (url.searchParams.get('watch') === 'true') this.watch(url, res);
    else this.list(url, res);
  }

  /** POST creates an Event (409 when its name is taken), PATCH merges into one (404 when there is none). */
  private writeEvent(method: string, namespace: string, name: string | undefined, body: string, res: http.ServerResponse): void {
    if (this.failEventWrites > 0) {
      this.failEventWrites--;
      return this.status(res, 500, 'InternalError', 'injected event write failure');
    }
    const obj = JSON.parse(body) as Obj;
    if (method === 'POST') {
      const key = `${namespace}/${obj.metadata.name}`;
      if (obj.metadata.namespace !== namespace) return this.status(res, 400, 'BadRequest', 'the namespace of the object does not match the namespace on the request');
      if (this.kubeEvents.has(key)) return this.status(res, 409, 'AlreadyExists', `events "${obj.metadata.name}" already exists`);
      obj.metadata.resourceVersion = String(++this.rv);
      this.kubeEvents.set(key, obj);
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
      return;
    }
    const key = `${namespace}/${name}`;
    const old = this.kubeEvents.get(key);
    if (!old) return this.status(res, 404, 'NotFound', `events "${name}" not found`);
    const merged: Obj = { ...old, ...obj, metadata: { ...old.metadata, resourceVersion: String(++this.rv) } };
    this.kubeEvents.set(key, merged);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(merged));
  }

  private status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message }));
  }

  private list(url: URL, res: http.ServerResponse): void {
    if (this.failLists > 0) {
      this.failLists--;
      return this.status(res, 500, 'InternalError', 'injected list failure');
    }
    const limit = Number(url.searchParams.get('limit') ?? 0) || Infinity;
    const start = Number(url.searchParams.get('continue') || 0);
    const shown = [...this.stores.get(url.pathname)!.values()].filter((o) => url.pathname !== '/api/v1/pods' || !this.withheldPods.has(keyOf(o)));
    const all = shown.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1));
    const page = all.slice(start, start + limit);
    const more = start + limit < all.length;
    // List items carry no kind or apiVersion, as on a real server.
    const items = page.map(({ kind: _k, apiVersion: _a, ...rest }) => rest);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: `${COLLECTIONS[url.pathname]!.kind}List`, apiVersion: 'v1', metadata: { resourceVersion: String(this.rv), ...(more ? { continue: String(start + limit) } : {}) }, items }));
  }

  private watch(url: URL, res: http.ServerResponse): void {
    const from = Number(url.searchParams.get('resourceVersion') || this.rv);
    if (from < this.compactedRv) {
      if (this.goneAsHttpStatus) return this.status(res, 410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 410, reason: 'Expired', message: `too old resource version: ${from} (${this.compactedRv})` } })}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    for (const e of this.events) {
      if (e.rv > from && e.collection === url.pathname && !this.hidden(e)) res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
    }
    const w: Watcher = { collection: url.pathname, res };
    this.watchers.push(w);
    const timeoutSec = Number(url.searchParams.get('timeoutSeconds') || 0);
    const timer = timeoutSec > 0 ? setTimeout(() => res.end(), timeoutSec * 1000) : null;
    res.on('close', () => {
      if (timer) clearTimeout(timer);
      this.watchers = this.watchers.filter((x) => x !== w);
    });
  }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * The Kubernetes API as the datastore uses it: a KubeConfig (in-cluster or a
 * kubeconfig file, from @kubernetes/client-node) for the server, TLS and
 * credentials, plain JSON GETs (and the few writes: Events), and watch
 * streams (client-node's Watch).
 */
import { HttpMethod, KubeConfig, RequestContext, Watch } from '@kubernetes/client-node';
import { fetch } from 'undici';

/** How long a GET may take before it is abandoned. */
const GET_TIMEOUT_MS = 30_000;

/** A non-2xx answer of the API server, with its HTTP status and (when the body is a Status) its reason. */
export class ApiStatusError extends Error {
  readonly statusCode: number;
  readonly reason: string;
  constructor(message: string, statusCode: number, reason = '') {
    super(message);
    this.statusCode = statusCode;
    this.reason = reason;
  }
}

/** True when the error says the resource version is too old (410 Gone / Expired): the caller must list again. */
export function isGone(err: unknown): boolean {
  return (
    (err instanceof ApiStatusError && (err.statusCode === 410 || err.reason === 'Expired' || err.reason === 'Gone')) ||
    (typeof err === 'object' && err !== null && (err as { statusCode?: unknown }).statusCode === 410)
  );
}

/** Loads a kubeconfig file, or the in-cluster service account when no path is given. */
export function loadKubeConfig(kubeconfig?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else {
    if (!process.env.KUBERNETES_SERVICE_HOST) {
      throw new Error('no --kubeconfig and not in a cluster (KUBERNETES_SERVICE_HOST is unset)');
    }
    kc.loadFromCluster();
  }
  return kc;
}

/** One event of a watch stream: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR with its object. */
export type WatchHandler = (type: string, object: Record<string, unknown>) => void;

/** A JSON client for the API server named by a KubeConfig. */
export class KubeClient {
  private readonly kc: KubeConfig;

  constructor(kc: KubeConfig) {
    this.kc = kc;
  }

  /** The API server's URL. */
  server(): string {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    return cluster.server;
  }

  /** GETs a path as JSON; throws ApiStatusError on a non-2xx status. */
  getJson<T>(path: string, query: Record<string, string | number | boolean | undefined> = {}, timeoutMs = GET_TIMEOUT_MS): Promise<T> {
    return this.request<T>(HttpMethod.GET, path, query, undefined, timeoutMs);
  }

  /**
   * Sends a JSON body (POST to create; PATCH with the patch's content type,
   * e.g. application/merge-patch+json) and returns the answer; throws
   * ApiStatusError on a non-2xx status.
   */
  sendJson<T>(method: 'POST' | 'PATCH', path: string, body: unknown, contentType = 'application/json', timeoutMs = GET_TIMEOUT_MS): Promise<T> {
    return this.request<T>(method === 'POST' ? HttpMethod.POST : HttpMethod.PATCH, path, {}, { text: JSON.stringify(body), contentType }, timeoutMs);
  }

  private async request<T>(
    method: HttpMethod,
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    body: { text: string; contentType: string } | undefined,
    timeoutMs: number,
  ): Promise<T> {
    const url = new URL(this.server() + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    const ctx = new RequestContext(url.toString(), method);
    await this.kc.applySecurityAuthentication(ctx);
    const res = await fetch(url, {
      method,
      headers: { ...ctx.getHeaders(), accept: 'application/json', ...(body ? { 'content-type': body.contentType } : {}) },
      ...(body ? { body: body.text } : {}),
      dispatcher: ctx.getDispatcher(),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    if (res.status < 200 || res.status > 299) {
      let reason = '';
      let message = text.slice(0, 300);
      try {
        const status = JSON.parse(text) as { reason?: string; message?: string };
        reason = status.reason ?? '';
        message = status.message ?? message;
      } catch {
        // not a Status body
      }
      throw new ApiStatusError(`${method} ${path}: ${res.status} ${message}`, res.status, reason);
    }
    return JSON.parse(text) as T;
  }

  /**
   * Opens a watch on a collection; `done` runs once when the stream ends
   * (null: the server closed it; otherwise the error, with statusCode on an
   * HTTP error). Resolves to the controller that aborts it.
   */
  watch(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    onEvent: WatchHandler,
    done: (err: unknown) => void,
    idleTimeoutMs: number,
  ): Promise<AbortController> {
    const watcher = new Watch(this.kc);
    // Client-node's timer (a private field, 30 s by default) restarts on every chunk and ends a stream
    // that went silent (a dead connection): it must outlast the server's own timeoutSeconds.
    (watcher as unknown as { requestTimeoutMs: number }).requestTimeoutMs = idleTimeoutMs;
    return watcher.watch(path, query, (type: string, obj: unknown) => onEvent(type, (obj ?? {}) as Record<string, unknown>), done);
  }
}

/**
 * A Kubernetes Event (core/v1, Warning, reason PolicyNotCompiled) on each
 * NetworkPolicy Sluice cannot compile as written, so that its author sees why
 * where they look (`kubectl describe networkpolicy`, `kubectl get events`),
 * not only in the agent's log.
 *
 * Once per revision of the object (its uid and spec), not per sync. The
 * Event's name is made of the same, so every node of the cluster names it
 * alike: the first creates it, and the others (or this agent after a restart)
 * find it there (409) and only move its lastTimestamp on. A report the API
 * server did not take is tried again later.
 */
import { createHash } from 'node:crypto';
import type { PolicyError } from './cluster-view.ts';
import { ApiStatusError, type KubeClient } from './kubernetes-client.ts';
import type { KubeObject } from './local.ts';
import { errorMessage } from '../../lib/errors.ts';

/** The Event's reason: what `kubectl get events` shows in its REASON column. */
export const POLICY_NOT_COMPILED = 'PolicyNotCompiled';
const COMPONENT = 'sluice-agent';
const RETRY_MS = 10_000;
/** events.k8s.io caps a note at 1 kB; a core Event is kept as short. */
const MAX_MESSAGE = 1024;
/** A DNS subdomain: the policy's name shortened so that `.<hash>` still fits. */
const MAX_NAME = 253 - 17;

type Meta = KubeObject['metadata'] & { uid?: string; resourceVersion?: string };

/** What the reporter needs of the API client. */
export type EventClient = Pick<KubeClient, 'sendJson'>;

/** Options: the client, this node (the Event's source), the log; now for tests. */
export interface PolicyEventsOptions {
  client: EventClient;
  node: string;
  log: (msg: string) => void;
  now?: () => Date;
  retryMs?: number;
}

/** The message of the Event: the causes, and what Sluice does meanwhile. */
export function eventMessage(error: PolicyError): string {
  const text = `Sluice cannot compile this NetworkPolicy: ${error.problems.join('; ')}. The pods it selects stay isolated; what cannot be read allows nothing until it is fixed.`;
  return text.length <= MAX_MESSAGE ? text : `${text.slice(0, MAX_MESSAGE - 3)}...`;
}

/** Reports PolicyErrors as Events; report() after every sync. */
export class PolicyEvents {
  private readonly o: PolicyEventsOptions;
  /** Revisions reported (or being reported), by key; only those of objects still failing are kept. */
  private readonly reported = new Set<string>();
  private latest: { errors: PolicyError[]; policies: KubeObject[] } | null = null;
  private retry: NodeJS.Timeout | null = null;
  /** Events created and found already there, for tests and the log. */
  readonly stats = { created: 0, existing: 0, failed: 0 };

  constructor(o: PolicyEventsOptions) {
    this.o = o;
  }

  /** Reports each error whose object revision has not been reported yet; policies are the datastore's objects (for uid and spec). */
  report(errors: PolicyError[], policies: KubeObject[]): Promise<void> {
    this.latest = { errors, policies };
    const byName = new Map(policies.map((p) => [`${p.metadata.namespace ?? 'default'}/${p.metadata.name}`, p]));
    const current = new Set<string>();
    const sends: Promise<void>[] = [];
    for (const error of errors) {
      const obj = byName.get(`${error.namespace}/${error.name}`);
      if (!obj) continue;
      const revision = createHash('sha256').update(JSON.stringify([(obj.metadata as Meta).uid ?? '', obj.spec ?? null])).digest('hex').slice(0, 16);
      const key = `${error.namespace}/${error.name}/${revision}`;
      current.add(key);
      if (this.reported.has(key)) continue;
      this.reported.add(key);
      sends.push(this.send(error, obj, revision, key));
    }
    // A fixed or deleted object is forgotten: broken again, it is a new revision to report.
    for (const key of this.reported) if (!current.has(key)) this.reported.delete(key);
    return Promise.all(sends).then(() => undefined);
  }

  /** Stops the retry timer. */
  stop(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
  }

  private async send(error: PolicyError, obj: KubeObject, revision: string, key: string): Promise<void> {
    const meta = obj.metadata as Meta;
    const namespace = error.namespace;
    const name = `${error.name.slice(0, MAX_NAME)}.${revision}`;
    const now = (this.o.now?.() ?? new Date()).toISOString().replace(/\.\d+Z$/, 'Z');
    const message = eventMessage(error);
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`;
    try {
      try {
        await this.o.client.sendJson('POST', path, {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { name, namespace },
          involvedObject: { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', namespace, name: error.name, ...(meta.uid ? { uid: meta.uid } : {}), ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}) },
          reason: POLICY_NOT_COMPILED,
          message,
          type: 'Warning',
          source: { component: COMPONENT, host: this.o.node },
          reportingComponent: COMPONENT,
          reportingInstance: this.o.node,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        });
        this.stats.created++;
        this.o.log(`NetworkPolicy ${namespace}/${error.name} cannot be compiled (Event ${name}): ${error.problems.join('; ')}`);
      } catch (err: unknown) {
        if (!(err instanceof ApiStatusError && err.statusCode === 409)) throw err;
        // Another node (or this agent before a restart) reported this revision: say it is still so.
        await this.o.client.sendJson('PATCH', `${path}/${encodeURIComponent(name)}`, { lastTimestamp: now, message }, 'application/merge-patch+json');
        this.stats.existing++;
      }
    } catch (err: unknown) {
      this.stats.failed++;
      this.reported.delete(key);
      this.o.log(`Event for NetworkPolicy ${namespace}/${error.name} not recorded (tried again in ${(this.o.retryMs ?? RETRY_MS) / 1000} s): ${errorMessage(err)}`);
      this.scheduleRetry();
    }
  }

  private scheduleRetry(): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      if (this.latest) void this.report(this.latest.errors, this.latest.policies);
    }, this.o.retryMs ?? RETRY_MS);
    this.retry.unref();
  }
}

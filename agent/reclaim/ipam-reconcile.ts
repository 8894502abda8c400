/**
 * The effectful side of IPAM reconciliation: gathers the facts (allocations,
 * endpoint records, which netns paths exist, the datastore's pods), lets
 * ipam/reconcile.ts decide, then removes each released attachment's endpoint
 * from the maps and its addresses from the store. Runs at start, on a timer,
 * and on POST /v1/ipam/reconcile (the CNI GC verb).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Ipam } from '../../ipam/allocator.ts';
import { decideReleases, type AttachmentDecision, type NetnsState } from '../../ipam/reconcile.ts';
import type { EndpointManager } from '../endpoints.ts';
import type { KubeObject } from '../datastore/local.ts';
import { errorMessage } from '../../lib/errors.ts';

/** Default grace period: longer than kubelet's 2-minute runtime request timeout, so no running ADD loses its address. */
export const DEFAULT_IPAM_GC_GRACE_MS = 5 * 60_000;
/** Default period of the background reconciliation. */
export const DEFAULT_IPAM_GC_INTERVAL_MS = 60_000;

/** What reconciliation acts on. */
export interface IpamReconcileDeps {
  ipam: Ipam;
  endpoints: Pick<EndpointManager, 'list' | 'unregister'>;
  /** "namespace/name" of every pod the datastore shows running on this node (read once per reconciliation); undefined without a datastore. */
  podsRunningHere?: (() => ReadonlySet<string>) | undefined;
  /** The datastore's answer to "does this pod exist"; undefined while the agent has no datastore. */
  podExists?: ((namespace: string, name: string) => boolean) | undefined;
  log: (message: string) => void;
}

/** One reconciliation request. */
export interface IpamReconcileOptions {
  graceMs: number;
  validAttachments?: { containerID: string; ifname: string }[] | undefined;
  /** Decide and report only; release nothing. */
  dryRun?: boolean;
}

/** What one reconciliation did. */
export interface IpamReconcileReport {
  released: AttachmentDecision[];
  kept: number;
  /** Attachments whose release failed, with the error. */
  failed: (AttachmentDecision & { error: string })[];
}

/**
 * A netns path as the agent sees it. The agent may run in a container that
 * mounts only /var/run/netns: a runtime that keeps netns files elsewhere
 * (containerd's netns_mounts_under_state_dir) gives paths whose directory
 * is not there, and /proc/<pid>/ns/net names a PID of a namespace the agent
 * may not share. Those are "unknown", never "gone".
 */
export function netnsState(netns: string): NetnsState {
  if (fs.existsSync(netns)) return 'exists';
  if (netns.startsWith('/proc/')) return 'unknown';
  return fs.existsSync(path.dirname(netns)) ? 'gone' : 'unknown';
}

/**
 * "namespace/name" of the pods that run on this node (their spec.nodeName, or
 * none: a one-node local cluster) among the datastore's pods, which hold only
 * pods that are not finished and not host-networked.
 */
export function runningOn(pods: readonly KubeObject[], nodeName: string): Set<string> {
  const out = new Set<string>();
  for (const p of pods) {
    const node = (p.spec as { nodeName?: string } | undefined)?.nodeName;
    if (node === undefined || node === '' || node === nodeName) out.add(`${p.metadata.namespace}/${p.metadata.name}`);
  }
  return out;
}

/** Runs one reconciliation now; synchronous, so no allocation interleaves with it. */
export function reconcileIpam(deps: IpamReconcileDeps, opts: IpamReconcileOptions): IpamReconcileReport {
  const running = deps.podsRunningHere?.();
  const decision = decideReleases({
    allocations: deps.ipam.list(),
    endpoints: deps.endpoints.list(),
    netnsState,
    podRunning: running ? (namespace, name) => running.has(`${namespace}/${name}`) : undefined,
    podExists: deps.podExists,
    validAttachments: opts.validAttachments,
    graceMs: opts.graceMs,
    now: deps.ipam.clock.now(),
  });
  const report: IpamReconcileReport = { released: [], kept: decision.keep.length, failed: [] };
  for (const d of decision.release) {
    if (opts.dryRun) {
      report.released.push(d);
      continue;
    }
    try {
      // The endpoint first: its addresses must leave the maps before another pod can get them.
      if (d.hasEndpoint) deps.endpoints.unregister(d.containerID, d.ifname);
      deps.ipam.release({ containerID: d.containerID, ifname: d.ifname });
      report.released.push(d);
      deps.log(`IPAM reconcile: released ${d.ips.join(', ')} of ${describe(d)}: ${d.reason}`);
    } catch (err: unknown) {
      const error = errorMessage(err);
      report.failed.push({ ...d, error });
      deps.log(`IPAM reconcile: release ${d.ips.join(', ')} of ${describe(d)} failed: ${error}`);
    }
  }
  return report;
}

/** Reconciles now and then every intervalMs; returns a function that stops the timer. */
export function startIpamReconciler(deps: IpamReconcileDeps, opts: { graceMs: number; intervalMs: number }): () => void {
  const runOnce = (): void => {
    try {
      reconcileIpam(deps, { graceMs: opts.graceMs });
    } catch (err: unknown) {
      deps.log(`IPAM reconcile failed: ${errorMessage(err)}`);
    }
  };
  runOnce();
  const timer = setInterval(runOnce, opts.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** Logs every allocation the current pools would not have made; returns how many there are. */
export function reportStaleAllocations(ipam: Ipam, log: (message: string) => void): number {
  const stale = ipam.stale();
  for (const s of stale) {
    log(
      `IPAM: allocation ${s.ip} of ${s.namespace || '?'}/${s.pod || '?'} (container ${s.containerID.slice(0, 12)}, ${s.ifname}) is ${
        s.reason === 'outside-pod-cidrs' ? `outside the pod CIDRs ${ipam.pools.map((p) => p.cidr.text).join(', ')}` : `on a ${s.reason} address`
      }: kept until its pod is deleted, never handed out again; recreate the pod to move it`,
    );
  }
  return stale.length;
}

function describe(d: AttachmentDecision): string {
  return `${d.namespace || '?'}/${d.pod || '?'} (container ${d.containerID.slice(0, 12)}, ${d.ifname})`;
}

/**
 * GET /v1/status: the agent's health at a glance. Cheap by default (the CNI
 * plugin's STATUS and GC verbs call it); `?maps=true` adds the datapath map
 * fill, which walks the maps' keys in the kernel. GET /v1/counters: the
 * datapath's counters, summed over CPUs.
 */
import pkg from '../../package.json' with { type: 'json' };
import type { Datapath } from '../../datapath/loader.ts';
import type { Ipam } from '../../ipam/allocator.ts';
import type { Route } from './server.ts';
import type { StatusResponse } from '../../contract/api-types.ts';
import type { EndpointManager } from '../endpoints.ts';
import type { MapFill } from '../metrics/map-fill.ts';
import type { PolicyState } from '../policy-sync/state.ts';
import type { Datastore } from '../datastore/datastore.ts';
import type { StoreRecovery } from '../store-check.ts';

/** The version this agent was built from (package.json). */
export const AGENT_VERSION: string = pkg.version;

/** What the status route reads. */
export interface StatusContext {
  node: string;
  pinDir: string;
  ipam: Ipam;
  endpoints: Pick<EndpointManager, 'list'>;
  datapath: { adopted: boolean; version: string; runningVersion: string };
  policy: PolicyState;
  /** The datastore the policy is computed from. */
  datastore: Pick<Datastore, 'objects' | 'ready' | 'describe'>;
  /** Wall-clock ms when the agent started. */
  startedAtMs?: number;
  /** The map fill, counted now; absent: `maps` is never reported. */
  mapFill?: () => Promise<MapFill[]>;
  /** The metrics endpoint as configured (null: disabled) and whether it is listening. */
  metrics?: { address: string | null; listening: boolean };
  /** The state directory's health (agent/state-disk.ts). */
  stateDisk?: { readonly fault: string | null };
  /** Stores this start found damaged and rebuilt (agent/store-check.ts). */
  recoveries?: readonly StoreRecovery[];
}

/** The agent's status; maps only when asked (they cost a walk of every map). */
export async function agentStatus(ctx: StatusContext, withMaps: boolean): Promise<StatusResponse> {
  const startedAtMs = ctx.startedAtMs ?? Date.now();
  const objects = ctx.datastore.objects();
  const last = ctx.policy.lastSync;
  const notReady: string[] = [];
  // A remote datastore is ready once its initial lists are in.
  if (!(ctx.datastore.ready?.() ?? true)) notReady.push('the datastore has not listed every collection yet');
  if (ctx.policy.syncError !== null) notReady.push(`the last sync of the datapath maps failed: ${ctx.policy.syncError}`);
  const diskFault = ctx.stateDisk?.fault ?? null;
  if (diskFault !== null) notReady.push(`${diskFault}: ADDs are refused with "try again"`);
  if (ctx.ipam.refusal) notReady.push(`${ctx.ipam.refusal}: ADDs are refused with "try again"`);
  const status: StatusResponse = {
    node: ctx.node,
    ready: notReady.length === 0,
    notReady,
    podCIDRs: ctx.ipam.pools.map((p) => p.cidr.text),
    endpoints: ctx.endpoints.list().length,
    datapath: { pinDir: ctx.pinDir, adopted: ctx.datapath.adopted, version: ctx.datapath.version, runningVersion: ctx.datapath.runningVersion },
    pools: ctx.ipam.usage(),
    agent: {
      pid: process.pid,
      version: AGENT_VERSION,
      startedAt: new Date(startedAtMs).toISOString(),
      uptimeSeconds: Math.round((Date.now() - startedAtMs) / 1000),
    },
    datastore: {
      backend: ctx.datastore.describe(),
      revision: ctx.policy.revision,
      lastSync: last
        ? { at: new Date(ctx.policy.lastSyncAtMs).toISOString(), durationMs: Number(last.durationMs.toFixed(3)), written: last.written, deleted: last.deleted }
        : null,
      pods: objects.pods.length,
      namespaces: objects.namespaces.length,
      policies: objects.networkPolicies.length,
      nodes: objects.nodes.length,
    },
    identities: ctx.policy.sync.state()?.identities.size ?? 0,
    policyRevision: ctx.policy.revision,
    policyErrors: ctx.policy.policyErrors ?? [],
    awaitingLabels: ctx.policy.awaitingLabels ?? [],
    rebuiltStores: [...(ctx.recoveries ?? [])],
    metrics: ctx.metrics ?? { address: null, listening: false },
  };
  if (withMaps && ctx.mapFill) status.maps = await ctx.mapFill();
  return status;
}

/** The GET /v1/status route. */
export function statusRoute(ctx: StatusContext): Route {
  return {
    method: 'GET',
    pattern: '/v1/status',
    handler: ({ query }): Promise<StatusResponse> => agentStatus(ctx, query.get('maps') === 'true'),
  };
}

/** The GET /v1/counters route. */
export function countersRoute(datapath: Pick<Datapath, 'readCounters'>): Route {
  return { method: 'GET', pattern: '/v1/counters', handler: () => datapath.readCounters() };
}

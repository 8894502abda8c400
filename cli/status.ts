/**
 * `sluice status`: one screen of the agent's health: the agent, its
 * datastore and policy, map fill, endpoints, pools, datapath counters and
 * the latest drops. `-o json` prints the same as one document (scripts rely
 * on node, ready, endpoints, datapath, pools and counters).
 */
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import type { SecurityResponse } from '../agent/api/security-routes.ts';
import { DEFAULT_SOCKET, type StatusMapFill, type StatusResponse } from '../contract/api-types.ts';
import type { MonitorEvent } from '../agent/monitor.ts';

/** Drops shown on the human-readable screen. */
const RECENT_DROPS_SHOWN = 5;
/** Endpoints awaiting their labels named one per line; the rest are counted. */
const AWAITING_SHOWN = 10;
const LABEL_WIDTH = 12;

type Counters = Record<string, { packets: number; bytes: number }>;

/** What `sluice status -o json` prints. */
export interface StatusDocument extends StatusResponse {
  counters: Counters;
  /** The latest drops and denials, newest last (at most what the agent keeps). */
  recentDrops: MonitorEvent[];
  /** Runtime security (GET /v1/security); absent from an agent that predates it. */
  security?: SecurityResponse;
}

/** Runs `sluice status`; returns the exit code. */
export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { socket: { type: 'string' }, output: { type: 'string', short: 'o' }, liveness: { type: 'boolean' } },
  });
  const socket = values.socket ?? process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET;
  const [status, counters, recentDrops] = await Promise.all([
    agentRequest<StatusResponse>(socket, 'GET', '/v1/status?maps=true'),
    agentRequest<Counters>(socket, 'GET', '/v1/counters'),
    agentRequest<MonitorEvent[]>(socket, 'GET', '/v1/monitor/drops').catch(() => []),
  ]);
  const answer = await agentRequest<SecurityResponse>(socket, 'GET', '/v1/security').catch(() => undefined);
  // An agent that predates it answers something else (or 404): no security line then.
  const security = answer && typeof answer.enabled === 'boolean' && Array.isArray(answer.modes) ? answer : undefined;
  const doc: StatusDocument = { ...status, counters, recentDrops, ...(security ? { security } : {}) };
  if (values.output === 'json') console.log(JSON.stringify(doc, null, 2));
  else for (const line of renderStatus(doc, Date.now())) console.log(line);
  // A readiness probe: 1 while the agent is not ready. --liveness: 0 whenever the agent answers.
  return status.ready || values.liveness ? 0 : 1;
}

/** The status screen as lines; nowMs makes "ago" testable. */
export function renderStatus(s: StatusDocument, nowMs: number): string[] {
  const out: string[] = [];
  const row = (label: string, ...lines: string[]) => lines.forEach((l, i) => out.push(`${(i === 0 ? `${label}:` : '').padEnd(LABEL_WIDTH)}${l}`));
  const a = s.agent;
  row('agent', `node ${s.node}, ${s.ready ? 'ready' : 'NOT READY'}${a ? `, pid ${a.pid}, up ${duration(a.uptimeSeconds)}, version ${a.version}` : ''}`);
  if (!s.ready && s.notReady?.length) row('not ready', ...s.notReady);
  const dp = s.datapath;
  const stale = dp.version && dp.runningVersion && dp.runningVersion !== dp.version;
  row(
    'datapath',
    `${dp.pinDir} (${dp.adopted ? 'adopted pinned programs' : 'loaded at start'})${dp.runningVersion ? `, version ${dp.runningVersion}` : ''}`,
    ...(stale ? [`NOT THIS AGENT'S PROGRAMS: it carries ${dp.version}, the links run ${dp.runningVersion} (a replacement failed: see the agent log)`] : []),
  );
  const d = s.datastore;
  if (d) {
    const sync = d.lastSync
      ? `last sync ${duration(Math.max(0, Math.round((nowMs - Date.parse(d.lastSync.at)) / 1000)))} ago in ${d.lastSync.durationMs.toFixed(1)} ms (${d.lastSync.written} written, ${d.lastSync.deleted} deleted)`
      : 'never synced';
    row('datastore', `${d.backend}, revision ${d.revision}, ${sync}`, `${d.pods} pods, ${d.namespaces} namespaces, ${d.policies} network policies, ${d.nodes} nodes`);
  }
  // A policy that cannot be compiled is its author's mistake, not the node's: not unready, its pods fail closed.
  row(
    'policy',
    `revision ${s.policyRevision ?? '?'}, ${s.identities ?? '?'} pod identities`,
    ...(s.policyErrors ?? []).map((e) => `NOT COMPILED: NetworkPolicy ${e.namespace}/${e.name}: ${e.problems.join('; ')} (its pods fail closed)`),
  );
  const waiting = s.awaitingLabels ?? [];
  row(
    'endpoints',
    `${s.endpoints}${waiting.length ? `, ${waiting.length} awaiting labels` : ''}`,
    ...waiting.slice(0, AWAITING_SHOWN).map((e) => `AWAITING LABELS: ${e.namespace}/${e.pod} (endpoint ${e.endpointId}) is isolated both ways until the datastore delivers its pod and namespace`),
    ...(waiting.length > AWAITING_SHOWN ? [`... and ${waiting.length - AWAITING_SHOWN} more (sluice status -o json)`] : []),
  );
  // Not unready: the node serves on what was rebuilt; the operator may want the damaged file (and the disk) looked at.
  for (const r of s.rebuiltStores ?? []) {
    row('store', `REBUILT: ${r.file} was damaged (${r.damage}); ${r.rebuilt}`, r.movedTo ? `the damaged file is kept at ${r.movedTo}` : 'it could not be moved aside: kept in memory, rebuilt at every start until it can');
  }
  row('pools', ...(s.pools.length ? s.pools.map((p) => `${p.cidr} ${p.used}/${p.size} used (${percent(p.used, p.size)})`) : ['(none)']));
  if (s.maps) row('maps', ...s.maps.map(mapLine));
  if (s.security) {
    const sec = s.security;
    const hooks = sec.modes.map((m) => `${m.mode} ${m.available ? 'yes' : 'no'}`).join(', ');
    row(
      'security',
      sec.enabled ? `on: ${sec.rules} rules${sec.errors.length ? `, ${sec.errors.length} NOT LOADED (sluice security status)` : ''}, ${sec.stats?.lost.total ?? 0} events lost` : `off: ${sec.reason}`,
      ...(hooks ? [`hooks: ${hooks}`] : []),
    );
  }
  if (s.metrics) row('metrics', s.metrics.address ? `http://${s.metrics.address}/metrics${s.metrics.listening ? '' : ' (NOT listening: see the agent log)'}` : 'off');
  row('counters', ...Object.entries(s.counters).map(([name, v]) => `${name.padEnd(22)} ${String(v.packets).padStart(10)} pkts ${String(v.bytes).padStart(12)} bytes`));
  const drops = s.recentDrops.slice(-RECENT_DROPS_SHOWN);
  row('drops', ...(drops.length ? drops.map((e) => `${e.time.slice(11, 23)} ${e.summary}`) : ['(none recently)']));
  return out;
}

function mapLine(m: StatusMapFill): string {
  const entries = m.truncated ? `>=${m.entries}` : String(m.entries);
  const full = m.refused ? `, FULL: ${m.refused} entries refused (see the agent log)` : '';
  return `${m.name.padEnd(12)} ${`${entries}/${m.maxEntries}`.padStart(16)} (${percent(m.entries, m.maxEntries)}${m.truncated ? '+' : ''})${full}`;
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-';
}

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${seconds % 60}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d${Math.floor((seconds % 86400) / 3600)}h`;
}

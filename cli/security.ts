/**
 * `sluice security`: runtime security on this node.
 *   status             on or off, the hook kinds the kernel runs, rules and their errors, events and losses
 *   events [--pod NS/NAME|NAME] [--rule NAME] [--alerts] [--last N] [--follow] [-o json]
 *                      events and the alerts rules raised on them (Falco's JSON for an alert)
 */
import { parseArgs } from 'node:util';
import { agentRequest, agentStream } from '../contract/client.ts';
import { DEFAULT_SOCKET } from '../contract/api-types.ts';
import type { SecurityEvent } from '../contract/security.ts';
import type { SecurityEventsResponse, SecurityResponse } from '../agent/api/security-routes.ts';
import type { SecurityItem } from '../agent/security/runtime.ts';

export const SECURITY_USAGE = `usage: sluice security status [-o json]
       sluice security events [--pod NS/NAME|NAME] [--rule NAME] [--alerts] [--last N] [--follow] [-o json]`;

function where(e: SecurityEvent): string {
  return e.pod ? `${e.pod.namespace}/${e.pod.name}` : 'host';
}

/** One item as a line people read. */
export function securityLine(item: SecurityItem): string {
  if (item.kind === 'alert') {
    const a = item.alert;
    return `${a.time.slice(11, 23)} ${a.priority} ${a.rule}${a.action !== 'alert' ? ` [${a.action}]` : ''}: ${a.output}`;
  }
  const e = item.event;
  const what =
    e.type === 'execve'
      ? `${e.proc.exepath} ${e.proc.args.slice(1).join(' ')}`.trim()
      : e.type === 'procexit'
        ? `${e.proc.name} exit ${e.exit?.signal ? `signal ${e.exit.signal}` : `code ${e.exit?.code ?? '?'}`}`
        : e.file
          ? `${e.proc.name} ${e.file.path} ${e.file.flagNames.join('|')}`
          : e.connect
            ? e.connect.socket
              ? `${e.proc.name} socket ${e.connect.socket} (IPv${e.connect.family})`
              : `${e.proc.name} -> ${e.connect.ip}:${e.connect.port}/${e.connect.protocol}`
            : `${e.proc.name} uid ${e.proc.previousUid ?? '?'} -> ${e.proc.uid}`;
  return `${e.time.slice(11, 23)} ${e.type.padEnd(8)} ${where(e).padEnd(20)} pid ${e.proc.pid} ${what}${e.enforced ? ` (${e.enforced})` : ''}`;
}

export async function securityCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      socket: { type: 'string' },
      pod: { type: 'string' },
      rule: { type: 'string' },
      alerts: { type: 'boolean' },
      last: { type: 'string' },
      follow: { type: 'boolean', short: 'f' },
      output: { type: 'string', short: 'o' },
    },
  });
  const socket = values.socket ?? process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET;
  const json = values.output === 'json';
  if (sub === 'status') {
    const s = await agentRequest<SecurityResponse>(socket, 'GET', '/v1/security');
    if (json) {
      console.log(JSON.stringify(s, null, 2));
      return 0;
    }
    console.log(`runtime security: ${s.enabled ? 'on' : `off (${s.reason})`}`);
    for (const m of s.modes) console.log(`  hook ${m.mode.padEnd(7)} ${m.available ? 'available' : `not available: ${m.reason}`}`);
    if (!s.enabled) return 0;
    console.log(`  rules: ${s.rules} loaded${s.ruleFiles.length ? ` (defaults, ${s.ruleFiles.join(', ')})` : ' (defaults)'}; kernel actions: ${s.kill} kill, ${s.denyConnect} deny-connect entries`);
    for (const e of s.errors) console.log(`  rule error: ${e}`);
    if (s.stats) {
      console.log(`  events: ${s.stats.received} received, ${s.stats.lost.total} lost in the kernel; ${s.stats.killed} killed, ${s.stats.denied} connects or raw/SCTP sockets denied`);
      // Each pod has its own budget: a pod's flood is its own loss.
      for (const l of s.stats.lostByPod ?? []) {
        const who = l.pod ? `${l.namespace}/${l.pod}` : l.host ? 'host' : `netns ${l.netns}`;
        console.log(`  lost by ${who}: ${l.budget} ${l.kind} events over its budget, ${l.ringbuf} to a full ring buffer`);
      }
    }
    return 0;
  }
  if (sub !== 'events') {
    console.error(SECURITY_USAGE);
    return 2;
  }
  const query = new URLSearchParams();
  if (values.pod) query.set('pod', values.pod);
  if (values.rule) query.set('rule', values.rule);
  if (values.alerts) query.set('alerts', '1');
  const print = (item: SecurityItem) => console.log(json ? JSON.stringify(item.kind === 'alert' ? item.alert : item.event) : securityLine(item));
  if (!values.follow) {
    query.set('last', values.last ?? '50');
    const res = await agentRequest<SecurityEventsResponse>(socket, 'GET', `/v1/security/events?${query}`);
    for (const item of res.items) print(item);
    console.error(`lost: ${res.lost.kernel} events in the kernel, ${res.lost.followers} to slow followers`);
    return 0;
  }
  if (values.last) query.set('last', values.last);
  await agentRequest<SecurityResponse>(socket, 'GET', '/v1/security'); // a clear error when the agent is unreachable
  query.set('follow', '1');
  return new Promise((resolve) => {
    const stop = agentStream(socket, `/v1/security/events?${query}`, (value) => print(value as SecurityItem), (err) => {
      if (err) console.error(`sluice security events: ${err.message}`);
      resolve(err ? 1 : 0);
    });
    process.once('SIGINT', () => {
      stop();
      resolve(0);
    });
  });
}

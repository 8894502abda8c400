/**
 * `sluice observe`: the agent's flow records (GET /v1/flows), the last N or
 * live, filtered, one line each or one JSON record per line; and what was
 * lost on the way, always said (on stderr, so -o json stays records only).
 */
import { parseArgs } from 'node:util';
import { agentRequest, agentStream } from '../contract/client.ts';
import { DEFAULT_SOCKET } from '../contract/api-types.ts';
import type { FlowRecord, FlowsResponse } from '../contract/flows.ts';

export const OBSERVE_USAGE = `usage: sluice observe [--follow] [--last N] [filters] [-o json] [--socket P]

  --follow, -f         print records as they come (after the last N, when --last is given)
  --last N             the newest N records the agent holds (default 20 without --follow)
  filters (each given must match; "either end" for pod, namespace, labels, port):
  --namespace, -n NS   --pod NS/NAME|NAME   --selector, -l 'app=web,tier!=db'
  --verdict allowed|denied|dropped          --type flow|drop|l7|alert  --l7 dns|http
  --protocol TCP|UDP|SCTP|ICMP|...          --port N                 --since 5m|ISO-TIME
  -o json              one record per line (fields: README, "Flow records")`;

const FILTERS = ['namespace', 'pod', 'selector', 'verdict', 'type', 'protocol', 'port', 'since', 'l7'] as const;

/** One record as a line people read. */
export function flowLine(r: FlowRecord): string {
  return `${r.time.slice(11, 23)} ${r.summary}`;
}

function lossesLine(res: Pick<FlowsResponse, 'lost' | 'held' | 'capacity'>): string {
  return `lost: ${res.lost.datapath} events in the datapath (rate limit or full ring), ${res.lost.followers} records to slow followers; the agent holds ${res.held} of ${res.capacity} records`;
}

export async function observeCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string' },
      follow: { type: 'boolean', short: 'f' },
      last: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      pod: { type: 'string' },
      selector: { type: 'string', short: 'l' },
      verdict: { type: 'string' },
      type: { type: 'string' },
      protocol: { type: 'string' },
      port: { type: 'string' },
      since: { type: 'string' },
      l7: { type: 'string' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(OBSERVE_USAGE);
    return 0;
  }
  if (values.output !== undefined && values.output !== 'json') throw new Error(`-o '${values.output}': only json is known`);
  const json = values.output === 'json';
  const socket = values.socket ?? process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET;
  const query = new URLSearchParams();
  for (const key of FILTERS) if (values[key] !== undefined) query.set(key, values[key]!);
  const print = (r: FlowRecord) => console.log(json ? JSON.stringify(r) : flowLine(r));

  if (!values.follow) {
    query.set('last', values.last ?? '20');
    const res = await agentRequest<FlowsResponse>(socket, 'GET', `/v1/flows?${query}`);
    for (const r of res.flows) print(r);
    console.error(lossesLine(res));
    return 0;
  }
  if (values.last !== undefined) query.set('last', values.last);
  // Checked before streaming: a bad filter is an answer (400), not a broken stream.
  const check = new URLSearchParams(query);
  check.set('last', '0');
  const before = await agentRequest<FlowsResponse>(socket, 'GET', `/v1/flows?${check}`);
  query.set('follow', '1');
  if (!json) console.error(`following flow records on ${socket} (Ctrl-C to stop)`);
  return new Promise((resolve) => {
    const stop = agentStream(
      socket,
      `/v1/flows?${query}`,
      (value) => print(value as FlowRecord),
      (err) => {
        if (err) console.error(`sluice observe: ${err.message}`);
        resolve(err ? 1 : 0);
      },
    );
    process.once('SIGINT', () => {
      stop();
      agentRequest<FlowsResponse>(socket, 'GET', '/v1/flows?last=0').then(
        (after) => {
          console.error(
            lossesLine({ ...after, lost: { datapath: after.lost.datapath - before.lost.datapath, followers: after.lost.followers - before.lost.followers } }).replace(
              /^lost:/,
              'lost while following:',
            ),
          );
          resolve(0);
        },
        () => resolve(0),
      );
    });
  });
}

/**
 * `sluice explain <from ns/pod|ip> <to ns/pod|ip> --port N [--protocol TCP|UDP|SCTP]`:
 * would a new flow get through, and why. The agent answers (GET /v1/explain)
 * from its compiled policy state; this prints, for the source's egress and
 * the destination's ingress, the verdict, the policy and rule behind it (or
 * the isolating policies none of whose rules match), and where it is
 * enforced. `-o json` prints the agent's answer as one document.
 */
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import { DEFAULT_SOCKET } from '../contract/api-types.ts';
import type { ExplainResponse, ExplainedDirection } from '../agent/api/explain-route.ts';

const USAGE = 'usage: sluice explain <from ns/pod|ip> <to ns/pod|ip> --port N [--protocol TCP|UDP|SCTP] [--family 4|6] [--socket PATH] [-o json]';
const LABEL_WIDTH = 20;

/** Runs `sluice explain`; returns the exit code (0 whenever the agent answered, whatever the verdict). */
export async function explainCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string', short: 'p' },
      protocol: { type: 'string', default: 'TCP' },
      family: { type: 'string' },
      socket: { type: 'string' },
      output: { type: 'string', short: 'o' },
    },
  });
  const [from, to] = positionals;
  if (!from || !to || !values.port || positionals.length > 2) {
    console.error(USAGE);
    return 2;
  }
  const query = new URLSearchParams({ from, to, port: values.port, protocol: values.protocol.toUpperCase() });
  if (values.family) query.set('family', values.family);
  const socket = values.socket ?? process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET;
  const answer = await agentRequest<ExplainResponse>(socket, 'GET', `/v1/explain?${query}`);
  if (values.output === 'json') {
    console.log(JSON.stringify(answer, null, 2));
  } else {
    for (const line of renderExplanation(answer)) console.log(line);
  }
  for (const w of answer.warnings) console.error(`warning: ${w}`);
  return 0;
}

function endText(end: ExplainResponse['from']): string {
  return end.pod ? `${end.pod} (${end.ip})` : `${end.ip} (${end.kind})`;
}

function whereText(d: ExplainedDirection, answeredBy: string): string {
  if (d.basis === 'none') return '';
  if (d.basis === 'compiled') return `enforced on this node (${answeredBy}): from its compiled policy`;
  const node = d.node ?? 'an unknown node';
  return d.node === answeredBy
    ? `enforced on this node (${answeredBy}), whose endpoint for the pod is not compiled yet: computed from the datastore`
    : `enforced on ${node === 'an unknown node' ? node : `node ${node}`}: computed here from the datastore with the same compiler`;
}

/** The answer as the lines people read. */
export function renderExplanation(x: ExplainResponse): string[] {
  const out: string[] = [];
  out.push(`${endText(x.from)} -> ${endText(x.to)} ${x.protocol}/${x.port}: ${x.allowed ? 'ALLOWED' : 'DENIED'}`);
  for (const d of [x.egress, x.ingress]) {
    const label = `  ${d.direction}${d.pod ? ` of ${d.pod}` : ''}`;
    const rows: string[] = [d.reason];
    for (const m of d.allowedBy.slice(1)) rows.push(`also allowed by ${m.policy} ${m.direction} rule ${m.rule} (peer: ${m.peer}; port: ${m.port})`);
    for (const m of d.notMatched) {
      if (m.notCompiled !== undefined) {
        rows.push(`${m.policy} ${m.direction} rule ${m.rule}: rule not compiled${m.notCompiled ? ` (${m.notCompiled})` : ''}, allows nothing`);
        continue;
      }
      const what = m.peerMatches && m.portMatches ? 'peer and port match, not together' : `peer ${m.peerMatches ? 'matches' : 'does not match'}, port ${m.portMatches ? 'matches' : 'does not match'}`;
      rows.push(`${m.policy} ${m.direction} rule ${m.rule}: ${what}`);
    }
    const where = whereText(d, x.answeredBy);
    if (where) rows.push(where);
    rows.forEach((row, i) => out.push(`${(i === 0 ? label : '').padEnd(LABEL_WIDTH)} ${row}`));
  }
  return out;
}

/**
 * What the CLI's read-only views share (`sluice ipam`, `sluice tcp-health`):
 * one GET on the agent's API, printed as it is with `-o json`, else as a table.
 */
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import { DEFAULT_SOCKET } from '../contract/api-types.ts';

/** Parses `[-o json] [--socket PATH] [-h]`, GETs apiPath and prints it (render: the human form); returns the exit code. */
export async function reportCommand<T>(argv: string[], usage: string, apiPath: string, render: (report: T) => void): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string', default: process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  if (values.output !== undefined && values.output !== 'json') throw new Error(`-o ${values.output}: the only output format is json`);
  const report = await agentRequest<T>(values.socket, 'GET', apiPath);
  if (values.output === 'json') console.log(JSON.stringify(report, null, 2));
  else render(report);
  return 0;
}

/** Prints rows under a header, each column as wide as its widest cell. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

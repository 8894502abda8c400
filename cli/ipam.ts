/**
 * `sluice ipam`: the node's pools, their use, and every allocation with its
 * pod, from the agent's API. `-o json` prints GET /v1/ipam as is:
 * {"pools": [{cidr, size, used, ...}], "allocations": [{containerID, ifname, ip, namespace, pod, ...}], "stale": [...]}.
 */
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import { DEFAULT_SOCKET, type IpamResponse } from '../contract/api-types.ts';

const USAGE = `usage: sluice ipam [-o json] [--socket PATH]

  Pools (size counts only assignable addresses), allocations with their pods,
  and stale allocations (outside the current pod CIDRs or on a reserved address).`;

const CONTAINER_ID_SHOWN_CHARS = 12;

/** Runs `sluice ipam`; returns the exit code. */
export async function ipamCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string', default: process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.output !== undefined && values.output !== 'json') throw new Error(`-o ${values.output}: the only output format is json`);
  const report = await agentRequest<IpamResponse>(values.socket, 'GET', '/v1/ipam');
  if (values.output === 'json') {
    console.log(JSON.stringify(report, null, 2));
    return 0;
  }
  printTable(
    ['POOL', 'FAMILY', 'USED', 'SIZE', 'GATEWAY', 'RESERVED'],
    report.pools.map((p) => [p.cidr, `IPv${p.family}`, String(p.used), String(p.size), p.gateway, p.reserved.join(',') || '-']),
  );
  console.log('');
  const now = Date.now();
  printTable(
    ['IP', 'POD', 'CONTAINER', 'IFNAME', 'AGE', 'STALE'],
    report.allocations.map((a) => [
      a.ip,
      a.namespace || a.pod ? `${a.namespace}/${a.pod}` : '-',
      a.containerID.slice(0, CONTAINER_ID_SHOWN_CHARS),
      a.ifname,
      age(now - a.createdAt),
      a.stale ?? '',
    ]),
  );
  if (report.stale.length > 0) {
    console.error(
      `\n${report.stale.length} stale allocation(s): the current pod CIDRs or reserved ranges exclude them. They are never handed out again; delete and recreate those pods to move them.`,
    );
  }
  return 0;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

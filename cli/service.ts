/**
 * `sluice service list`: every Service frontend the agent's socket load
 * balancer serves (address, port, protocol, type) and its backends with their
 * state and new flows. `-o json` prints GET /v1/services as is (contract/services.ts).
 */
import { printTable, reportCommand } from './report.ts';
import type { ServicesResponse } from '../contract/services.ts';

const USAGE = `usage: sluice service list [-o json] [--socket PATH]

  Per Service frontend (ClusterIP address, port, protocol), its backends:
    STATE   ready (takes new flows), not-ready or terminating (never chosen)
    FLOWS   new connections the socket hooks sent it (TCP and UDP connects, UDP sends)`;

/** Runs `sluice service ...`; returns the exit code. */
export async function serviceCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'list') {
    console.error(USAGE);
    return sub === '--help' || sub === '-h' ? 0 : 2;
  }
  return reportCommand<ServicesResponse>(rest, USAGE, '/v1/services', (report) => {
    if (!report.enabled) console.error(`socket load balancing is off: ${report.reason ?? 'unknown reason'}`);
    if (report.syncError) console.error(`last sync incomplete: ${report.syncError}`);
    const rows: string[][] = [];
    for (const f of report.frontends) {
      const frontend = `${f.address.includes(':') ? `[${f.address}]` : f.address}:${f.port}/${f.protocol}`;
      const service = `${f.namespace}/${f.name}${f.portName ? `:${f.portName}` : ''}`;
      const type = f.nodePort ? `${f.type}:${f.nodePort}` : f.type;
      if (!f.served) {
        rows.push([frontend, type, service, f.protocol === 'SCTP' ? '(not served: SCTP)' : '(NOT SERVED: its map entries were refused, see above)', '-', '-']);
        continue;
      }
      if (f.backends.length === 0) rows.push([frontend, type, service, '(none: refused)', '-', '-']);
      for (const b of f.backends) rows.push([frontend, type, service, `${b.address.includes(':') ? `[${b.address}]` : b.address}:${b.port}`, b.state, String(b.newFlows)]);
    }
    printTable(['FRONTEND', 'TYPE', 'SERVICE', 'BACKEND', 'STATE', 'FLOWS'], rows);
  });
}

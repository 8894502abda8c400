/**
 * `sluice ipam`: the node's pools, their use, and every allocation with its
 * pod, from the agent's API. `-o json` prints GET /v1/ipam as is:
 * {"pools": [{cidr, size, used, ...}], "allocations": [{containerID, ifname, ip, namespace, pod, ...}], "stale": [...]}.
 */
import { printTable, reportCommand } from './report.ts';
import type { IpamResponse } from '../contract/api-types.ts';

const USAGE = `usage: sluice ipam [-o json] [--socket PATH]

  Pools (size counts only assignable addresses), allocations with their pods,
  and stale allocations (outside the current pod CIDRs or on a reserved address).`;

const CONTAINER_ID_SHOWN_CHARS = 12;

/** Runs `sluice ipam`; returns the exit code. */
export async function ipamCommand(argv: string[]): Promise<number> {
  return reportCommand<IpamResponse>(argv, USAGE, '/v1/ipam', (report) => {
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
  });
}


function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/**
 * `sluice tcp-health`: TCP health per local pod from the agent's tracing
 * programs: retransmissions, connections opened (connect / accept),
 * closed, reset and failed, and the round-trip times measured. `-o json`
 * prints GET /v1/tcp-health as is (contract/tcp-health.ts).
 */
import { printTable, reportCommand } from './report.ts';
import type { RttSummary, TcpHealthResponse } from '../contract/tcp-health.ts';

const USAGE = `usage: sluice tcp-health [-o json] [--socket PATH]

  Per local pod, since its network namespace was first counted:
    RETRANS   retransmissions (each usually one segment)
    CONNECT   connections opened by connect()     ACCEPT  connections accepted
    CLOSED    established connections that ended  RESET   ... ended by an RST received
    FAILED    connections never established (refused, timed out)
    RTT       samples, mean, and the median and 99th percentile (upper bound of
              their power-of-two bucket)`;

/** Runs `sluice tcp-health`; returns the exit code. */
export async function tcpHealthCommand(argv: string[]): Promise<number> {
  return reportCommand<TcpHealthResponse>(argv, USAGE, '/v1/tcp-health', (report) => {
    if (!report.enabled) console.error(`TCP health is off: ${report.reason ?? 'unknown reason'}`);
    printTable(
      ['POD', 'RETRANS', 'CONNECT', 'ACCEPT', 'CLOSED', 'RESET', 'FAILED', 'RTT-SAMPLES', 'RTT-MEAN', 'RTT-P50', 'RTT-P99'],
      report.pods.map((p) => [
        `${p.namespace}/${p.pod}`,
        String(p.retransmits),
        String(p.connections.openedActive),
        String(p.connections.openedPassive),
        String(p.connections.closed),
        String(p.connections.reset),
        String(p.connections.failed),
        String(p.rtt.samples),
        duration(p.rtt.meanUs),
        duration(rttQuantileUs(p.rtt, 0.5), '<'),
        duration(rttQuantileUs(p.rtt, 0.99), '<'),
      ]),
    );
    const u = report.unattributed;
    if (u.netns > 0) console.error(`\nnot a local pod's: ${u.netns} network namespace(s), ${u.retransmits} retransmits, ${u.connections.openedActive + u.connections.openedPassive} connections opened`);
    if (report.lost.counters + report.lost.rtt > 0) console.error(`events not counted (a full map): ${report.lost.counters} connection/retransmit, ${report.lost.rtt} RTT`);
  });
}

/** The upper bound of the bucket holding the q-quantile sample, in µs; null without samples. */
export function rttQuantileUs(rtt: RttSummary, q: number): number | null {
  if (rtt.samples === 0) return null;
  const rank = q * rtt.samples;
  let seen = 0;
  for (const b of rtt.buckets) {
    seen += b.count;
    if (seen >= rank) return b.toUs;
  }
  return rtt.buckets.at(-1)?.toUs ?? null;
}

function duration(us: number | null, prefix = ''): string {
  if (us === null) return '-';
  if (us < 1000) return `${prefix}${Math.round(us)}µs`;
  if (us < 1_000_000) return `${prefix}${(us / 1000).toFixed(1)}ms`;
  return `${prefix}${(us / 1_000_000).toFixed(2)}s`;
}


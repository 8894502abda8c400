/**
 * Records pod startup as a cluster's workload sees it: for every pod that
 * appears while this runs, creation → first container running (the sandbox,
 * the CNI ADD with its policy sync, the container start). Polls the API once
 * a second (pods of finished specs vanish with their namespaces); on SIGINT
 * or SIGTERM writes every pod and the median, p90 and max to --out.
 *
 * usage: node e2e/pod-startup.ts --out FILE [--namespace-prefix P] (KUBECONFIG names the cluster)
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { KubeClient, loadKubeConfig } from '../agent/datastore/kubernetes-client.ts';

interface PodRecord {
  namespace: string;
  name: string;
  created: string;
  running?: string;
  startupSeconds?: number;
}

interface PodJson {
  metadata: { uid: string; namespace: string; name: string; creationTimestamp: string };
  status?: { containerStatuses?: { state?: { running?: { startedAt?: string }; terminated?: { startedAt?: string } } }[] };
}

/** Quantile of sorted numbers (nearest rank). */
function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string' }, 'namespace-prefix': { type: 'string', default: 'network-policy' } } });
  if (!values.out) throw new Error('usage: pod-startup.ts --out FILE');
  const client = new KubeClient(loadKubeConfig(process.env.KUBECONFIG));
  const pods = new Map<string, PodRecord>();
  let stopped = false;
  const finish = () => {
    stopped = true;
    const done = [...pods.values()].filter((p) => p.startupSeconds !== undefined);
    const secs = done.map((p) => p.startupSeconds!).sort((a, b) => a - b);
    const stats = { pods: secs.length, medianSeconds: quantile(secs, 0.5), p90Seconds: quantile(secs, 0.9), maxSeconds: secs.at(-1) ?? NaN };
    fs.writeFileSync(values.out!, JSON.stringify({ ...stats, all: [...pods.values()] }, null, 2));
    process.exit(0);
  };
  process.on('SIGINT', finish);
  process.on('SIGTERM', finish);
  while (!stopped) {
    try {
      const list = await client.getJson<{ items: PodJson[] }>('/api/v1/pods');
      for (const p of list.items) {
        if (!p.metadata.namespace.startsWith(values['namespace-prefix'])) continue;
        const rec = pods.get(p.metadata.uid) ?? { namespace: p.metadata.namespace, name: p.metadata.name, created: p.metadata.creationTimestamp };
        const starts = (p.status?.containerStatuses ?? [])
          .map((c) => c.state?.running?.startedAt ?? c.state?.terminated?.startedAt)
          .filter((t): t is string => typeof t === 'string')
          .sort();
        if (rec.running === undefined && starts[0]) {
          rec.running = starts[0];
          rec.startupSeconds = (Date.parse(starts[0]) - Date.parse(rec.created)) / 1000;
        }
        pods.set(p.metadata.uid, rec);
      }
    } catch {
      // the API may be busy: try again next second
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

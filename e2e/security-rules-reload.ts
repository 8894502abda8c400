/**
 * Runtime security rules from the ConfigMap, reloaded on change, on a real
 * cluster (issue 19): the kubelet swaps a ConfigMap volume's files through a
 * `..data` symlink, which is not what a local file edit looks like. A kill
 * rule for `date` in one namespace is added to ConfigMap sluice-security-rules;
 * once the agent has it, `date` exec'd in a pod of that namespace dies with
 * 137 and an alert names the pod, while a pod of another namespace still runs
 * it; with the ConfigMap restored, `date` runs again. Prints how long each
 * reload took to reach the pod. Runs inside the e2e cluster's namespaces.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { agentRequest } from '../contract/client.ts';
import { DEFAULT_SOCKET } from '../contract/api-types.ts';

const KUBECTL = process.env.KUBECTL ?? '/var/cache/sluice-k8s/bin/kubectl';
const NS = 'sluice-sec-test';
const OTHER_NS = 'sluice-sec-other';
const RULE = 'E2E no date in sluice-sec-test';
/** The kubelet refreshes ConfigMap volumes on its sync period (1 min) plus its cache's TTL. */
const RELOAD_DEADLINE_MS = 240_000;
let failures = 0;

function kubectl(args: string[], input?: string): string {
  return execFileSync(KUBECTL, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

function pod(namespace: string, name: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace, name },
    spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'c', image: 'k8s.gcr.io/e2e-test-images/agnhost:2.21', args: ['pause'] }] },
  };
}

function rulesConfigMap(localRules: string): object {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'sluice-system', name: 'sluice-security-rules' }, data: { 'local-rules.yaml': localRules } };
}

/** Exit status of `date` exec'd in the pod (137: killed). */
function runDate(namespace: string, name: string): number | null {
  return spawnSync(KUBECTL, ['-n', namespace, 'exec', name, '--', 'date'], { encoding: 'utf8', timeout: 30_000 }).status;
}

async function waitFor(what: string, check: () => boolean, since: number): Promise<void> {
  for (;;) {
    if (check()) {
      console.log(`ok   ${what} after ${((performance.now() - since) / 1000).toFixed(1)} s`);
      return;
    }
    if (performance.now() - since > RELOAD_DEADLINE_MS) {
      failures++;
      console.log(`FAIL ${what}: not within ${RELOAD_DEADLINE_MS / 1000} s`);
      return;
    }
    await new Promise((r) => setTimeout(r, 3_000));
  }
}

function expect(what: string, ok: boolean): void {
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
}

async function main(): Promise<void> {
  const original = kubectl(['-n', 'sluice-system', 'get', 'configmap', 'sluice-security-rules', '-o', 'json']);
  const originalRules = (JSON.parse(original) as { data?: Record<string, string> }).data?.['local-rules.yaml'] ?? '';
  for (const ns of [NS, OTHER_NS]) kubectl(['create', 'namespace', ns]);
  try {
    kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [pod(NS, 'victim'), pod(OTHER_NS, 'bystander')] }));
    kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'pod/victim', '--timeout=120s']);
    kubectl(['-n', OTHER_NS, 'wait', '--for=condition=Ready', 'pod/bystander', '--timeout=120s']);
    expect('date runs in the pod before the rule', runDate(NS, 'victim') === 0);

    const rule = [
      `- rule: ${RULE}`,
      '  desc: the e2e reload check',
      `  condition: evt.type = execve and proc.name = date and k8s.ns.name = ${NS}`,
      '  output: "%proc.exepath killed in %k8s.ns.name/%k8s.pod.name"',
      '  priority: CRITICAL',
      '  action: kill',
      '',
    ].join('\n');
    let since = performance.now();
    kubectl(['apply', '-f', '-'], JSON.stringify(rulesConfigMap(`${originalRules}\n${rule}`)));
    await waitFor('the ConfigMap rule reached the agent: date killed (137) in the pod', () => runDate(NS, 'victim') === 137, since);
    expect('date still runs in a pod of another namespace', runDate(OTHER_NS, 'bystander') === 0);
    const events = await agentRequest<{ items: { kind: string; alert?: { rule: string; output_fields: Record<string, unknown>; event?: { enforced?: string } } }[] }>(
      DEFAULT_SOCKET,
      'GET',
      `/v1/security/events?rule=${encodeURIComponent(RULE)}&alerts=1&last=20`,
    );
    const alert = events.items.find((i) => i.alert?.output_fields['k8s.pod.name'] === 'victim' && i.alert.output_fields['k8s.ns.name'] === NS)?.alert;
    expect('the alert names the pod', alert !== undefined);
    expect('the alert says the binary was killed', alert?.event?.enforced === 'killed');
    if (failures > 0) {
      // What the agent saw of the pod, to tell a rule that never arrived from one that did not match.
      const status = await agentRequest<unknown>(DEFAULT_SOCKET, 'GET', '/v1/security');
      const seen = await agentRequest<{ items: unknown[] }>(DEFAULT_SOCKET, 'GET', `/v1/security/events?pod=${NS}/victim&last=5`);
      console.log(JSON.stringify({ status, events: seen.items }, null, 1).slice(0, 6000));
    }

    since = performance.now();
    kubectl(['apply', '-f', '-'], JSON.stringify(rulesConfigMap(originalRules)));
    await waitFor('the ConfigMap restored reached the agent: date runs again', () => runDate(NS, 'victim') === 0, since);
  } finally {
    // The rules as they were (by content: the stored object's resourceVersion is stale by now).
    kubectl(['apply', '-f', '-'], JSON.stringify(rulesConfigMap(originalRules)));
    for (const ns of [NS, OTHER_NS]) spawnSync(KUBECTL, ['delete', 'namespace', ns, '--wait=false'], { stdio: 'ignore' });
  }
  console.log(failures === 0 ? 'security rules reload: all checks passed' : `security rules reload: ${failures} check(s) failed`);
  process.exitCode = failures === 0 ? 0 : 1;
}

await main();

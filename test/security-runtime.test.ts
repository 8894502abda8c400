/**
 * Runtime security through the agent, on a local cluster started with
 * `sluice local up --security-rules FILE`: real processes in the pods'
 * network namespaces and on the host. The shipped shell rule fires for a
 * pod's shell and not the host's; a kill rule stops its binary in the pod it
 * selects before it runs (137, no side effect) and nowhere else; a
 * deny-connect rule refuses with EPERM in its pod only; a rule file that
 * does not parse is reported with its file and line while the others work;
 * and the alerts reach `sluice security events` and /metrics.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SecurityAlert } from '../contract/security.ts';
import { must, sh, SLUICE, TestCluster } from './support/local-cluster.ts';
import { parseExposition } from './support/prometheus-text.ts';

const RULES = `
- rule: Marker maker in pod a
  desc: the test's kill rule
  condition: evt.type = execve and proc.name = touch and k8s.pod.name = a
  output: killed %proc.exepath in %k8s.ns.name/%k8s.pod.name
  priority: CRITICAL
  action: kill
- rule: No port 9999 from pod a
  desc: the test's deny-connect rule
  condition: evt.type = connect and fd.sport = 9999 and k8s.pod.name = a
  output: denied %fd.sip:%fd.sport from %k8s.pod.name
  priority: WARNING
  action: deny-connect
`;
const BROKEN = `
- rule: Broken
  desc: does not parse
  condition: evt.type = execve and proc.nmae = x
  output: never
  priority: NOTICE
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('runtime security in the agent', () => {
  const cluster = new TestCluster();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-secrules-'));
  let netns: Record<string, string> = {};
  const inPod = (pod: string, ...cmd: string[]) => sh('ip', ['netns', 'exec', netns[`s/${pod}`]!, ...cmd]);
  const alerts = async (...args: string[]): Promise<SecurityAlert[]> => {
    const out = await must(SLUICE, ['security', 'events', '--socket', cluster.socket, '--alerts', '--last', '1000', '-o', 'json', ...args]);
    return out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as SecurityAlert);
  };
  const eventually = async <T>(read: () => Promise<T>, check: (v: T) => boolean, timeoutMs = 5000): Promise<T> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = await read();
      if (check(v) || Date.now() > end) return v;
      await sleep(200);
    }
  };

  beforeAll(async () => {
    fs.writeFileSync(path.join(dir, 'test.yaml'), RULES);
    fs.writeFileSync(path.join(dir, 'zz-broken.yaml'), BROKEN);
    await cluster.up('--metrics-address', '127.0.0.1:0', '--security-rules', dir);
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: s}
---
apiVersion: v1
kind: Pod
metadata: {namespace: s, name: a, labels: {app: a}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: s, name: b, labels: {app: b}}
`);
    ({ netns } = await cluster.podAddresses());
  }, 120_000);
  afterAll(async () => {
    await cluster.teardown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reports its hooks and rules, and the broken rule with its file and line', async () => {
    const status = JSON.parse(await must(SLUICE, ['security', 'status', '--socket', cluster.socket, '-o', 'json']));
    expect(status.enabled).toBe(true);
    expect(status.rules).toBeGreaterThanOrEqual(8); // six defaults and the two above
    expect(status.errors).toEqual([expect.stringMatching(/zz-broken\.yaml:4: rule "Broken": condition: unknown field proc\.nmae/)]);
    expect(status.modes.find((m: { mode: string }) => m.mode === 'tp_btf').available).toBe(true);
    expect(status.kill).toBe(1);
    expect(status.denyConnect).toBe(1);
  });

  it("raises the shell alert for a pod's shell, not for the host's", async () => {
    expect((await inPod('b', 'sh', '-c', 'true')).code).toBe(0);
    expect((await sh('sh', ['-c', 'true'])).code).toBe(0);
    const shells = await eventually(() => alerts('--rule', 'Shell started in a pod'), (a) => a.length > 0);
    expect(shells.length).toBeGreaterThan(0);
    expect(shells.every((a) => a.event.pod?.namespace === 's')).toBe(true);
    expect(shells.some((a) => a.event.pod?.name === 'b' && a.output_fields['proc.name'] === 'sh')).toBe(true);
    expect(shells[0]).toMatchObject({ priority: expect.any(String), source: 'syscall', tags: expect.any(Array) });
  });

  it('shows alerts among the flow records too (sluice observe --type alert)', async () => {
    const out = await must(SLUICE, ['observe', '--socket', cluster.socket, '--type', 'alert', '--pod', 's/b', '--last', '100', '-o', 'json']);
    const records = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; source: { name: string }; alert: { rule: string } });
    expect(records.some((r) => r.type === 'alert' && r.source.name === 's/b' && r.alert.rule === 'Shell started in a pod')).toBe(true);
  });

  it('kills the binary in the pod the rule selects before it runs, and only there', async () => {
    const marker = (pod: string) => path.join(dir, `marker-${pod}`);
    // Through a shell, which reports the exit status as a runtime would: 128 + SIGKILL.
    const killed = await inPod('a', 'sh', '-c', `touch ${marker('a')}; echo $?`);
    expect(killed.stdout.trim()).toBe('137');
    expect(fs.existsSync(marker('a'))).toBe(false);
    expect((await inPod('b', 'touch', marker('b'))).code).toBe(0);
    expect(fs.existsSync(marker('b'))).toBe(true);
    expect((await sh('touch', [marker('host')])).code).toBe(0);
    const kills = await eventually(() => alerts('--rule', 'Marker maker in pod a'), (a) => a.length > 0);
    expect(kills[0]).toMatchObject({ action: 'kill', event: { pod: { name: 'a' } } });
  });

  it('refuses the connect with EPERM in the pod the rule selects, and only there', async () => {
    const connect = (pod: string) =>
      inPod(pod, '/usr/bin/python3', '-c', 'import socket,errno\ns=socket.socket()\ntry:\n s.connect(("127.0.0.1", 9999))\nexcept OSError as e:\n print(errno.errorcode[e.errno])');
    expect((await connect('a')).stdout.trim()).toBe('EPERM');
    expect((await connect('b')).stdout.trim()).toBe('ECONNREFUSED');
    // Nor around the rule with a raw socket: pod a may not make one, pod b may.
    const raw = (pod: string) =>
      inPod(pod, '/usr/bin/python3', '-c', 'import socket,errno\ntry:\n socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP); print("made")\nexcept OSError as e:\n print(errno.errorcode[e.errno])');
    expect((await raw('a')).stdout.trim()).toBe('EPERM');
    expect((await raw('b')).stdout.trim()).toBe('made');
  });

  it("counts a flooding pod's losses as its own, in status and /metrics", async () => {
    await inPod('a', '/usr/bin/python3', '-c', 'import os\nfor i in range(30000): os.close(os.open("/etc/hostname", os.O_RDONLY))');
    const text = await must(SLUICE, ['security', 'status', '--socket', cluster.socket]);
    expect(text).toMatch(/lost by s\/a: [1-9]\d* files events over its budget/);
    expect(text).not.toMatch(/lost by s\/b/);
    const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as { metrics: { address: string } };
    const m = parseExposition(await (await fetch(`http://${status.metrics.address}/metrics`)).text());
    const lost = m.samples.filter((x) => x.name === 'sluice_security_pod_events_lost_total' && x.labels['namespace'] === 's' && x.labels['pod'] === 'a' && x.labels['kind'] === 'files' && x.labels['reason'] === 'budget');
    expect(lost.length).toBe(1);
    expect(lost[0]!.value).toBeGreaterThan(0);
  });

  it('counts events and alerts in /metrics', async () => {
    const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as { metrics: { address: string } };
    const m = parseExposition(await (await fetch(`http://${status.metrics.address}/metrics`)).text());
    const sum = (name: string, labels: Record<string, string> = {}) =>
      m.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
    expect(sum('sluice_security_events_total', { type: 'execve' })).toBeGreaterThan(0);
    expect(sum('sluice_security_alerts_total', { rule: 'Shell started in a pod' })).toBeGreaterThan(0);
    expect(sum('sluice_security_alerts_total', { rule: 'Marker maker in pod a', priority: 'CRITICAL' })).toBeGreaterThanOrEqual(1);
    expect(m.types.get('sluice_security_events_lost_total')).toBe('counter');
  });
});

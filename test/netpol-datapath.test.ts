/**
 * What the datapath guarantees whatever the policy says: pods cannot spoof,
 * fragments and IP options never carry a packet past a port rule, and a new
 * pod that a policy isolates is never reachable, not even while it comes up.
 * Crafted packets come from scapy inside the pods' namespaces.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, SLUICE, TestCluster } from './support/local-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';

describe('datapath guarantees', () => {
  const cluster = new TestCluster();
  const manifests = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-netpol-'));
  let podIp: Record<string, string> = {};
  let netns: Record<string, string> = {};

  const write = (name: string, yaml: string) => {
    const file = path.join(manifests, name);
    fs.writeFileSync(file, yaml);
    return file;
  };
  const apply = (yaml: string) => must(SLUICE, ['local', '--dir', cluster.dir, 'apply', '-f', write(`m${Date.now()}.yaml`, yaml)]);
  const packets = async (from: string, ...args: string[]) => (await must('ip', ['netns', 'exec', netns[from]!, PYTHON, PACKETS, ...args])).trim();
  const counter = async (name: string) => (await cluster.status()).counters[name]?.packets ?? 0;
  /**
   * A probe (frag, options, sctp) that the datapath should drop: it listens for the answer until one of
   * `counters` shows a drop, the evidence that a packet of the probe was judged and dropped (one dropped
   * fragment is enough: the datagram cannot be put together without it), rather than for its whole window.
   * Prints what packets.py found: 'none', or the answer if one came after all.
   */
  const dropped = async (counters: string[], from: string, ...args: string[]): Promise<string> => {
    const drops = async () => (await Promise.all(counters.map(counter))).reduce((a, b) => a + b, 0);
    const before = await drops();
    const child = spawn('ip', ['netns', 'exec', netns[from]!, PYTHON, PACKETS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const listening = new Promise<void>((resolve) => child.stderr.on('data', (d: Buffer) => ((err += d.toString()).includes('listening') ? resolve() : undefined)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let done = false;
    void exited.then(() => (done = true));
    while (!done) {
      if ((await drops()) > before) {
        await Promise.race([listening, exited]);
        if (!done) child.kill('SIGUSR1');
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const code = await exited;
    if (code !== 0) throw new Error(`packets.py ${args.join(' ')} exited ${code}: ${err}${out}`);
    return out.trim();
  };
  const refresh = async () => {
    const pods = await cluster.pods();
    podIp = Object.fromEntries(pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p.status.podIP]));
    netns = Object.fromEntries(pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p.metadata.annotations['sluice.dev/netns']!]));
  };

  // A short idle timeout for non-TCP flows, so expiry can be watched.
  const CT_TIMEOUT_OTHER_SEC = 5;
  beforeAll(async () => {
    await cluster.up(`--agent-arg=--ct-timeout-other-sec=${CT_TIMEOUT_OTHER_SEC}`);
    await apply(`
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: a, labels: {pod: a}}
spec: {containers: [{name: c, ports: [{name: u80, containerPort: 80, protocol: UDP}, {name: u81, containerPort: 81, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: b, labels: {pod: b}}
`);
    await refresh();
  });
  afterAll(async () => {
    await cluster.teardown();
    fs.rmSync(manifests, { recursive: true, force: true });
  });

  it('drops a packet whose source address is not the pod\'s own', async () => {
    const before = await counter('DROP_SPOOF');
    await packets('x/b', 'spoof-ip', podIp['x/a']!, '81', podIp['x/a']!.replace(/\.\d+$/, '.250'));
    expect((await counter('DROP_SPOOF')) - before).toBe(1);
  });

  it('drops a packet whose source MAC is not the pod\'s own', async () => {
    const before = await counter('DROP_SPOOF');
    await packets('x/b', 'spoof-mac', podIp['x/a']!, '81');
    expect((await counter('DROP_SPOOF')) - before).toBe(1);
  });

  it('passes fragments and IP options to an allowed port, and neither to a denied one', async () => {
    // Without policy both ports answer: the checks below can tell passing from dropping. (Another
    // source port: a flow that exists before a policy stays established after it, as in Cilium.)
    expect(await packets('x/b', 'frag', podIp['x/a']!, '80', '40100')).toBe('echo');
    await apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: only-81}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{protocol: UDP, port: 81}]}]
`);
    expect(await packets('x/b', 'frag', podIp['x/a']!, '81')).toBe('echo');
    expect(await packets('x/b', 'options', podIp['x/a']!, '81')).toBe('echo');
    const denied = await counter('DROP_POLICY_INGRESS');
    expect(await dropped(['DROP_POLICY_INGRESS'], 'x/b', 'frag', podIp['x/a']!, '80')).toBe('none');
    expect(await dropped(['DROP_POLICY_INGRESS'], 'x/b', 'options', podIp['x/a']!, '80')).toBe('none');
    expect((await counter('DROP_POLICY_INGRESS')) - denied).toBeGreaterThanOrEqual(5);
  });

  it('enforces SCTP ports (the pod, having no SCTP, answers what passes with ICMP)', async () => {
    await apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: sctp-9000}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{protocol: SCTP, port: 9000}]}]
`);
    expect(await packets('x/b', 'sctp', podIp['x/a']!, '9000')).toBe('answer');
    expect(await dropped(['DROP_POLICY_INGRESS'], 'x/b', 'sctp', podIp['x/a']!, '9001')).toBe('none');
  });

  it('judges an established flow again when its policy changes or it idles out, and stops it once denied', async () => {
    const also82 = 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: also-82}\nspec: {podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{protocol: UDP, port: 82}]}]}\n';
    // only-81 allows UDP 81 to x/a (from the fragments test); this flow is established under it.
    expect(await packets('x/b', 'frag', podIp['x/a']!, '81', '41000')).toBe('echo');
    const judged = await counter('POLICY_ALLOWED');
    expect(await packets('x/b', 'frag', podIp['x/a']!, '81', '41000'), 'established').toBe('echo');
    expect(await counter('POLICY_ALLOWED'), 'an established flow is not judged as new').toBe(judged);
    // A change of a's rules that still allows the flow: judged again, and it stays.
    await apply(also82);
    expect(await packets('x/b', 'frag', podIp['x/a']!, '81', '41000'), 'after a change that still allows it').toBe('echo');
    await new Promise((r) => setTimeout(r, (CT_TIMEOUT_OTHER_SEC + 1.5) * 1000));
    expect(await packets('x/b', 'frag', podIp['x/a']!, '81', '41000'), 'the same flow once idle').toBe('echo');
    expect(await counter('POLICY_ALLOWED'), 'once idle, the flow was judged as new').toBeGreaterThan(judged);
    // The rule that allowed it goes: the next packet of the flow is dropped, no idle time needed.
    await must(SLUICE, ['local', '--dir', cluster.dir, 'delete', '-f', write('only-81.yaml', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: only-81}\n')]);
    expect(await dropped(['DROP_POLICY_INGRESS', 'DROP_REVOKED'], 'x/b', 'frag', podIp['x/a']!, '81', '41000'), 'after the rule that allowed it is gone').toBe('none');
    await must(SLUICE, ['local', '--dir', cluster.dir, 'delete', '-f', write('also-82.yaml', also82)]);
  });

  it('drops later fragments whose first fragment was never seen', async () => {
    const before = await counter('DROP_FRAGMENT');
    await packets('x/b', 'frag-tail', podIp['x/a']!, '81');
    expect((await counter('DROP_FRAGMENT')) - before).toBe(3);
  });

  it('never lets a packet reach a new pod that a policy isolates, not even while it comes up', async () => {
    await apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: isolate-new}
spec:
  podSelector: {matchLabels: {app: new}}
  policyTypes: [Ingress]
`);
    // Addresses are handed out in order, so the next pod's address is known before it exists.
    const next = (ip: string, n: number) => ip.replace(/\d+$/, (last) => String(Number(last) + n));
    const used = Object.values(podIp).map((ip) => Number(ip.split('.')[3]));
    const base = podIp['x/a']!;
    const nextIp = next(base, Math.max(...used) - Number(base.split('.')[3]) + 1);
    const control = next(nextIp, 1);

    const hammer = (ip: string) => must('ip', ['netns', 'exec', netns['x/b']!, PYTHON, PACKETS, 'syn-hammer', ip, '80', '6']);
    const isolated = hammer(nextIp);
    await new Promise((r) => setTimeout(r, 1500));
    await apply('apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: new, labels: {app: new}}\n');
    expect(Number((await isolated).trim()), 'answers from the isolated pod').toBe(0);

    // Control: the same hammer does see a pod that no policy isolates.
    const open = hammer(control);
    await new Promise((r) => setTimeout(r, 1500));
    await apply('apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: open, labels: {app: open}}\n');
    await refresh();
    expect(podIp['x/new']).toBe(nextIp);
    expect(podIp['x/open']).toBe(control);
    expect(Number((await open).trim()), 'answers from the open pod').toBeGreaterThan(0);
  });
});

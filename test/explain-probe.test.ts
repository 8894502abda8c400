/**
 * `sluice explain` against real traffic: on a local cluster of the
 * NetworkPolicy suite's model (namespaces x, y, z; pods a, b, c in each,
 * serving TCP and UDP 80 and 81), with a generated policy set applied, every
 * ordered pair of pods on every served port is explained (by pod name and by
 * address) and probed, and the answers must agree with the probes.
 *
 * The 288 probes go through the suite's long-lived probers (real TCP and UDP
 * echoes from inside the source pod's network namespace, each from a source
 * port not used before): `sluice local probe` starts two Node processes per
 * probe, which on two cores would take minutes for all of them. The explain
 * answers come from the agent's API, which is the document `sluice explain
 * -o json` prints; for one flow of each probed port, the `sluice explain`
 * executable and `sluice local probe` are run too, and must say the same.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { CaseContext } from '../conformance/netpol/case.ts';
import { generate } from '../conformance/netpol/generate.ts';
import { COMBOS, NAMESPACES, PODS, namespaceManifest, parseCombo, podManifest, type Combo } from '../conformance/netpol/model.ts';
import { ProbePool } from '../conformance/netpol/probe-pool.ts';
import type { ExplainResponse } from '../agent/api/explain-route.ts';
import { agentRequest } from '../contract/client.ts';
import { SLUICE, TestCluster, sh } from './support/local-cluster.ts';

/** The generated set: seed and iteration chosen for a mix of both directions isolated, allowed and denied, ipBlock and named ports. */
const SEED = 18;
const ITERATION = 33;
const PROBE_TIMEOUT_MS = 1000;
const RETRY_TIMEOUT_MS = 3000;

interface Flow {
  from: string;
  to: string;
  combo: Combo;
  protocol: 'tcp' | 'udp';
  port: number;
}

describe('sluice explain agrees with real probes', () => {
  const cluster = new TestCluster();
  const probers = new ProbePool();

  beforeAll(async () => {
    await cluster.up();
    await cluster.apply(NAMESPACES.map((ns) => YAML.stringify(namespaceManifest(ns))).join('---\n'));
    await cluster.apply(PODS.map((ref) => YAML.stringify(podManifest(ref))).join('---\n'));
  }, 120_000);

  afterAll(async () => {
    await probers.stop();
    await cluster.teardown();
  }, 60_000);

  it(`on every ordered pair of pods and every served port of generated set ${SEED}/${ITERATION}`, async () => {
    const { ip, netns } = await cluster.podAddresses();
    const ctx: CaseContext = { ip: (pod) => ip[pod]!, podCIDR: cluster.podCIDR };
    const g = generate(SEED, ITERATION, ctx);
    await cluster.apply([...g.relabels, ...g.policies].map((m) => YAML.stringify(m)).join('---\n'));
    await probers.start(new Map(PODS.map((p) => [p, netns[p]!])));

    const flows: Flow[] = COMBOS.flatMap((combo) => PODS.flatMap((from) => PODS.filter((to) => to !== from).map((to) => ({ from, to, combo, ...parseCombo(combo) }))));
    const ask = (f: Flow, to: string) =>
      agentRequest<ExplainResponse>(cluster.socket, 'GET', `/v1/explain?${new URLSearchParams({ from: f.from, to, port: String(f.port), protocol: f.protocol.toUpperCase() })}`);
    const byName = await Promise.all(flows.map((f) => ask(f, f.to)));
    const byAddress = await Promise.all(flows.map((f) => ask(f, ip[f.to]!)));
    const probe = (f: Flow, timeoutMs: number) => probers.probe({ from: f.from, ip: ip[f.to]!, protocol: f.protocol, port: f.port, timeoutMs });
    const probed = await Promise.all(flows.map(async (f, i) => {
      const first = await probe(f, PROBE_TIMEOUT_MS);
      // Expected to connect and did not: once more, slower, before calling it a disagreement.
      return first.ok || !byName[i]!.allowed ? first : probe(f, RETRY_TIMEOUT_MS);
    }));

    const disagreements = flows.flatMap((f, i) => {
      const x = byName[i]!;
      const ok = probed[i]!.ok;
      const out: string[] = [];
      if (x.allowed !== ok) {
        out.push(`${f.from} -> ${f.to} ${f.combo}: explain says ${x.allowed ? 'allowed' : 'denied'} (egress: ${x.egress.reason}; ingress: ${x.ingress.reason}), the probe ${ok ? 'connected' : `did not connect (${probed[i]!.error})`}`);
      }
      if (byAddress[i]!.allowed !== ok) out.push(`${f.from} -> ${ip[f.to]} (${f.to}) ${f.combo}: explained by address, ${byAddress[i]!.allowed ? 'allowed' : 'denied'}; the probe ${ok ? 'connected' : 'did not connect'}`);
      return out;
    });
    expect(disagreements, `policies: ${JSON.stringify(g.policies)}`).toEqual([]);
    // Both answers occur, and each direction denies something: the case is neither all open nor all shut.
    expect(byName.some((x) => x.allowed)).toBe(true);
    expect(byName.some((x) => !x.egress.allowed)).toBe(true);
    expect(byName.some((x) => !x.ingress.allowed)).toBe(true);
    // Every direction was answered from this node's compiled state, without a warning; an address is its pod.
    expect(byName.flatMap((x) => [x.egress.basis, x.ingress.basis]).filter((b) => b !== 'compiled')).toEqual([]);
    expect([...byName, ...byAddress].flatMap((x) => x.warnings)).toEqual([]);
    expect(byAddress.filter((x, i) => x.to.pod !== flows[i]!.to)).toEqual([]);

    // The executables: for one allowed and one denied flow of each probed port (where there are both), what
    // `sluice explain -o json` prints is the API's answer, and `sluice local probe` agrees with it.
    const samples = COMBOS.flatMap((combo) => [true, false].map((want) => flows.findIndex((f, i) => f.combo === combo && byName[i]!.allowed === want))).filter((i) => i >= 0);
    await Promise.all(samples.map(async (i) => {
      const f = flows[i]!;
      const cli = await sh(SLUICE, ['explain', f.from, f.to, '--port', String(f.port), '--protocol', f.protocol, '--socket', cluster.socket, '-o', 'json']);
      expect(cli.code, cli.stderr).toBe(0);
      // The same answer, but for the revision of the maps, which moves on with every sync.
      expect({ ...(JSON.parse(cli.stdout) as ExplainResponse), policyRevision: 0 }, `sluice explain ${f.from} ${f.to} ${f.combo}`).toEqual({ ...byName[i]!, policyRevision: 0 });
      const run = (timeoutMs: number) => cluster.local('probe', f.from, f.to, '--protocol', f.protocol, '--port', String(f.port), '--timeout-ms', String(timeoutMs));
      let connected = (await run(PROBE_TIMEOUT_MS)).code === 0;
      if (!connected && byName[i]!.allowed) connected = (await run(RETRY_TIMEOUT_MS)).code === 0;
      expect(connected, `sluice local probe ${f.from} ${f.to} ${f.combo}`).toBe(byName[i]!.allowed);
    }));
  }, 120_000);
});

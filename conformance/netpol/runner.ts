/**
 * Runs cases against a live local cluster: brings up the model (namespaces
 * x, y, z; pods a, b, c), starts one prober per pod, then for each step
 * applies its change, probes every pod pair on every (protocol, port) and
 * compares with the expected reachability. Between cases it removes every
 * policy and restores the model's labels.
 */
import YAML from 'yaml';
import type { Case, CaseContext, Step } from './case.ts';
import { expectedByEvaluator } from './expected-by-evaluator.ts';
import { NetpolCluster, type Layout } from './local-cluster.ts';
import {
  COMBOS,
  NAMESPACES,
  PODS,
  baseNamespaceLabels,
  basePodLabels,
  baseState,
  namespaceManifest,
  parseCombo,
  podManifest,
  type ClusterState,
} from './model.ts';
import { ProbePool, type ProbeOutcome } from './probe-pool.ts';
import { Reachability, mismatches, type Mismatch } from './reachability.ts';
import { recordApply, recordDelete } from './state-changes.ts';
import { truthTable } from './truth-table.ts';
import type { Manifest, ObjectRef } from './types.ts';
import { errorMessage } from '../../lib/errors.ts';

/** Probe settings. */
export interface ProbeOptions {
  /** Timeout of a first probe; a blocked connection costs this much. */
  timeoutMs: number;
  /** Timeout of the second try of a probe that was expected to connect but did not. */
  retryTimeoutMs: number;
}

/** The result of one step. */
export interface StepResult {
  title: string;
  mismatches: Mismatch[];
  /** Printable detail of a failed step (truth tables, policies, diagnosis); empty when it passed. */
  report: string;
}

/** The result of one case (fixed or generated). */
export interface CaseResult {
  name: string;
  passed: boolean;
  steps: StepResult[];
  ms: number;
  error?: string;
}

const sameLabels = (a: Record<string, string>, b: Record<string, string>) => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

/** A model cluster ready to run cases. */
export class ModelRunner {
  readonly cluster: NetpolCluster;
  private readonly pool = new ProbePool();
  private state: ClusterState | null = null;
  private readonly ips = new Map<string, string>();

  private readonly options: ProbeOptions;

  constructor(options: ProbeOptions, layout?: Layout) {
    this.options = options;
    this.cluster = new NetpolCluster(layout);
  }

  /** Brings the cluster and the model up and starts the probers. */
  async setUp(): Promise<void> {
    await this.cluster.up();
    await this.cluster.apply(NAMESPACES.map((ns) => namespaceManifest(ns)));
    await this.cluster.apply(PODS.map((p) => podManifest(p)));
    const netns = new Map<string, string>();
    for (const pod of await this.cluster.pods()) {
      const ref = `${pod.metadata.namespace}/${pod.metadata.name}`;
      if (!PODS.includes(ref)) continue;
      const ip = pod.status?.podIP;
      const ns = pod.metadata.annotations?.['sluice.dev/netns'];
      if (!ip || !ns) throw new Error(`pod ${ref} has no address or netns: ${JSON.stringify(pod)}`);
      this.ips.set(ref, ip);
      netns.set(ref, ns);
    }
    for (const p of PODS) if (!this.ips.has(p)) throw new Error(`pod ${p} is missing from get pods`);
    this.state = baseState(this.ips);
    await this.pool.start(netns);
  }

  /** Runs one probe as it is given (for checks that need a particular source port). */
  probeOnce(spec: { from: string; to: string; protocol: 'tcp' | 'udp'; port: number; sourcePort?: number }): Promise<ProbeOutcome> {
    const { to, ...rest } = spec;
    return this.pool.probe({ ...rest, ip: this.context().ip(to), timeoutMs: this.options.retryTimeoutMs });
  }

  /** Stops the probers and removes the cluster; returns what could not be cleaned. */
  async tearDown(): Promise<string[]> {
    await this.pool.stop();
    return this.cluster.teardown();
  }

  /** The context steps build their manifests with. */
  context(): CaseContext {
    return {
      ip: (pod) => {
        const ip = this.ips.get(pod);
        if (!ip) throw new Error(`no pod ${pod} in the model`);
        return ip;
      },
      podCIDR: this.cluster.podCIDR,
    };
  }

  /** The suite's picture of the cluster now. */
  current(): ClusterState {
    if (!this.state) throw new Error('the model is not set up');
    return this.state;
  }

  /** Applies objects and records them. */
  async apply(objects: Manifest[]): Promise<void> {
    await this.cluster.apply(objects);
    recordApply(this.current(), objects);
  }

  /** Deletes objects and records it. */
  async delete(refs: ObjectRef[]): Promise<void> {
    await this.cluster.delete(refs);
    recordDelete(this.current(), refs);
  }

  /** Back to the model's base: no policies, base labels. */
  async reset(): Promise<void> {
    const s = this.current();
    if (s.policies.length > 0) await this.delete(s.policies.map((p) => ({ kind: 'NetworkPolicy', namespace: p.metadata.namespace, name: p.metadata.name })));
    const restore: Manifest[] = [];
    for (const [ns, labels] of s.namespaces) if (!sameLabels(labels, baseNamespaceLabels(ns))) restore.push(namespaceManifest(ns));
    for (const pod of s.pods) if (!sameLabels(pod.labels, basePodLabels(pod.name))) restore.push(podManifest(`${pod.namespace}/${pod.name}`));
    await this.apply(restore);
  }

  /**
   * Probes every pod pair on every combo. A probe that was expected to connect
   * and did not is tried once more with a longer timeout, so a slow moment of
   * a busy machine is not taken for a drop; a connection that got through is
   * never retried (it cannot be a fluke).
   */
  async probeAll(expected: Reachability): Promise<{ observed: Reachability; outcomes: Map<string, ProbeOutcome> }> {
    const observed = new Reachability(false);
    const outcomes = new Map<string, ProbeOutcome>();
    const jobs: Promise<void>[] = [];
    for (const combo of COMBOS) {
      const { protocol, port } = parseCombo(combo);
      for (const from of PODS) {
        for (const to of PODS) {
          const spec = { from, ip: this.ips.get(to)!, protocol, port };
          jobs.push(
            (async () => {
              let out = await this.pool.probe({ ...spec, timeoutMs: this.options.timeoutMs });
              if (!out.ok && expected.get(combo, from, to)) out = await this.pool.probe({ ...spec, timeoutMs: this.options.retryTimeoutMs });
              outcomes.set(`${combo} ${from} ${to}`, out);
              observed.set({ from, to, on: [combo] }, out.ok);
            })(),
          );
        }
      }
    }
    await Promise.all(jobs);
    return { observed, outcomes };
  }

  /** Probes, compares, and on a mismatch writes the report a person needs to find the cause. */
  async check(title: string, expected: Reachability, declaredOnly: boolean): Promise<StepResult> {
    const { observed, outcomes } = await this.probeAll(expected);
    const found = mismatches(expected, observed);
    if (found.length === 0) return { title, mismatches: [], report: '' };
    const lines = [`  step: ${title}: ${found.length} of ${COMBOS.length * PODS.length * (PODS.length - 1)} probes differ`];
    const combos = COMBOS.filter((c) => found.some((m) => m.combo === c));
    for (const c of combos) lines.push(truthTable(c, expected, observed));
    lines.push(...this.diagnosis(found, outcomes, expected, declaredOnly));
    lines.push(...(await this.policyDumps(found)));
    return { title, mismatches: found, report: lines.join('\n') };
  }

  private diagnosis(found: Mismatch[], outcomes: Map<string, ProbeOutcome>, expected: Reachability, declaredOnly: boolean): string[] {
    const lines: string[] = [];
    if (declaredOnly) {
      // The case's matrix was written by hand: does the reference evaluator read the spec the same way?
      const reference = expectedByEvaluator(this.current());
      const disagree = mismatches(expected, reference);
      lines.push(
        disagree.length === 0
          ? '  the reference evaluator agrees with the declared matrix'
          : `  the reference evaluator DISAGREES with the declared matrix at ${disagree.length} cells (suite bug?): ${disagree.slice(0, 6).map(cell).join('; ')}`,
      );
    }
    lines.push('  differing probes (source port, time, error):');
    for (const m of found.slice(0, 12)) {
      const o = outcomes.get(`${m.combo} ${m.from} ${m.to}`)!;
      lines.push(`    ${cell(m)}: ${o.ok ? 'connected' : 'blocked'} from port ${o.sourcePort} in ${o.ms} ms${o.error ? ` (${o.error})` : ''}`);
    }
    if (found.length > 12) lines.push(`    ... and ${found.length - 12} more`);
    lines.push('  policies in force:');
    const policies = this.current().policies;
    if (policies.length === 0) lines.push('    (none)');
    for (const p of policies) lines.push(YAML.stringify(p).trimEnd().replace(/^/gm, '    '));
    const relabelled = this.current().pods.filter((p) => !sameLabels(p.labels, basePodLabels(p.name)));
    for (const p of relabelled) lines.push(`  pod ${p.namespace}/${p.name} labels: ${JSON.stringify(p.labels)}`);
    for (const [ns, labels] of this.current().namespaces) if (!sameLabels(labels, baseNamespaceLabels(ns))) lines.push(`  namespace ${ns} labels: ${JSON.stringify(labels)}`);
    lines.push(`  pod addresses: ${PODS.map((p) => `${p}=${this.ips.get(p)}`).join(' ')}`);
    return lines;
  }

  /** `sluice policy` of the pods whose policy decides the differing probes (at most 3). */
  private async policyDumps(found: Mismatch[]): Promise<string[]> {
    const pods = new Set<string>();
    for (const m of found) {
      pods.add(m.to);
      pods.add(m.from);
      if (pods.size >= 3) break;
    }
    const out: string[] = [];
    for (const pod of [...pods].slice(0, 3)) {
      out.push(`  sluice policy ${pod}:`);
      out.push((await this.cluster.policyDump(pod)).trimEnd().replace(/^/gm, '    '));
    }
    return out;
  }

  /** Runs one step of a fixed case. */
  async runStep(step: Step): Promise<StepResult> {
    if (step.delete) await this.delete(step.delete);
    if (step.apply) await this.apply(step.apply(this.context()));
    return this.check(step.title, step.expect(Reachability.allowAll()), true);
  }

  /** Runs a fixed case from the base state, and restores the base state after it. */
  async runCase(c: Case): Promise<CaseResult> {
    const started = Date.now();
    const steps: StepResult[] = [];
    try {
      for (const step of c.steps) steps.push(await this.runStep(step));
      return { name: c.name, passed: steps.every((s) => s.mismatches.length === 0), steps, ms: Date.now() - started };
    } catch (err: unknown) {
      return { name: c.name, passed: false, steps, ms: Date.now() - started, error: errorMessage(err) };
    } finally {
      await this.reset();
    }
  }
}

/** "tcp/80 x/a -> y/b (expected connect)". */
export function cell(m: Mismatch): string {
  return `${m.combo} ${m.from} -> ${m.to} (expected ${m.expected ? 'connect' : 'blocked'})`;
}

/**
 * The NetworkPolicy suite's reference evaluator against the suite's
 * hand-written cases, with no cluster: two readings of the spec, written
 * separately (each case's declared matrix and the evaluator), must agree on
 * every case, step and probe. Also: the generator is reproducible and only
 * makes policies the evaluator can read.
 */
import { describe, expect, it } from 'vitest';
import type { CaseContext } from '../conformance/netpol/case.ts';
import { CASES } from '../conformance/netpol/cases.ts';
import { expectedByEvaluator } from '../conformance/netpol/expected-by-evaluator.ts';
import { generate, mutate } from '../conformance/netpol/generate.ts';
import { cidrContains } from '../conformance/netpol/ip-block.ts';
import { labelsMatch } from '../conformance/netpol/label-selector.ts';
import { PODS, baseState } from '../conformance/netpol/model.ts';
import { Reachability, mismatches } from '../conformance/netpol/reachability.ts';
import { recordApply, recordDelete } from '../conformance/netpol/state-changes.ts';
import type { NetworkPolicy } from '../conformance/netpol/types.ts';

const POD_CIDR = '10.99.7.0/24';
const IPS = new Map(PODS.map((p, i) => [p, `10.99.7.${i + 2}`]));
const ctx: CaseContext = { ip: (p) => IPS.get(p)!, podCIDR: POD_CIDR };

describe('reference evaluator', () => {
  for (const c of CASES) {
    it(`agrees with the declared matrices of case ${c.name}`, () => {
      const state = baseState(IPS);
      for (const step of c.steps) {
        if (step.delete) recordDelete(state, step.delete);
        if (step.apply) recordApply(state, step.apply(ctx));
        const declared = step.expect(Reachability.allowAll());
        const cells = mismatches(declared, expectedByEvaluator(state)).map((m) => `${m.combo} ${m.from}->${m.to} declared ${m.expected}`);
        expect(cells, `step "${step.title}"`).toEqual([]);
      }
    });
  }

  it('matches label selectors as the API reference says', () => {
    expect(labelsMatch({}, {})).toBe(true);
    expect(labelsMatch({ matchLabels: { a: '1' } }, { a: '1', b: '2' })).toBe(true);
    expect(labelsMatch({ matchLabels: { a: '1' } }, { a: '2' })).toBe(false);
    expect(labelsMatch({ matchExpressions: [{ key: 'a', operator: 'NotIn', values: ['1'] }] }, {})).toBe(true);
    expect(labelsMatch({ matchExpressions: [{ key: 'a', operator: 'In', values: ['1'] }] }, {})).toBe(false);
    expect(labelsMatch({ matchExpressions: [{ key: 'a', operator: 'Exists' }] }, { a: '' })).toBe(true);
    expect(labelsMatch({ matchExpressions: [{ key: 'a', operator: 'DoesNotExist' }] }, { a: '' })).toBe(false);
  });

  it('knows which addresses a CIDR holds', () => {
    expect(cidrContains('10.0.0.0/8', '10.255.1.2')).toBe(true);
    expect(cidrContains('10.0.0.0/8', '11.0.0.1')).toBe(false);
    expect(cidrContains('0.0.0.0/0', '1.2.3.4')).toBe(true);
    expect(cidrContains('0.0.0.0/4', '10.1.2.3')).toBe(true);
    expect(cidrContains('10.1.2.3/32', '10.1.2.3')).toBe(true);
    expect(cidrContains('10.1.2.3/32', '10.1.2.4')).toBe(false);
    expect(cidrContains('fd00::/8', '10.1.2.3')).toBe(false);
    expect(cidrContains('fd00::/8', 'fd12::1')).toBe(true);
    expect(cidrContains('::ffff:0:0/96', '::ffff:10.0.0.1')).toBe(true);
  });
});

describe('policy generator', () => {
  it('is reproducible from seed and iteration', () => {
    expect(generate(7, 3, ctx)).toEqual(generate(7, 3, ctx));
    expect(generate(7, 3, ctx)).not.toEqual(generate(7, 4, ctx));
    expect(mutate(7, 3, ctx, generate(7, 3, ctx))).toEqual(mutate(7, 3, ctx, generate(7, 3, ctx)));
  });

  it('makes valid policies the evaluator reads, and some that isolate', () => {
    let isolating = 0;
    for (let i = 0; i < 300; i++) {
      const g = generate(1, i, ctx);
      const m = mutate(1, i, ctx, g);
      const changed = m.apply.filter((o): o is NetworkPolicy => o.kind === 'NetworkPolicy');
      for (const p of [...g.policies, ...changed]) {
        for (const rule of [...(p.spec.ingress ?? []), ...(p.spec.egress ?? [])]) {
          for (const port of rule.ports ?? []) {
            if (port.endPort !== undefined) {
              expect(typeof port.port).toBe('number');
              expect(port.endPort).toBeGreaterThanOrEqual(port.port as number);
            }
          }
        }
      }
      const state = baseState(IPS);
      recordApply(state, [...g.relabels, ...g.policies]);
      const r = expectedByEvaluator(state);
      if (mismatches(Reachability.allowAll(), r).length > 0) isolating++;
      recordDelete(state, m.delete);
      recordApply(state, m.apply);
      expectedByEvaluator(state);
    }
    // Most generated sets must restrict something, or the mode shows little.
    expect(isolating).toBeGreaterThan(200);
  });
});

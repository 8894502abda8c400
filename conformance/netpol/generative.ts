/**
 * The generative mode: each iteration resets the model, applies a random
 * valid policy set (and relabels) from generate.ts, and compares what the
 * probes see with what the reference evaluator says the spec allows; then
 * changes the set in place (policies replaced, added, deleted, labels
 * changed) and compares again, which exercises the agent's incremental path.
 */
import { expectedByEvaluator } from './expected-by-evaluator.ts';
import { generate, mutate } from './generate.ts';
import type { CaseResult, ModelRunner } from './runner.ts';
import { errorMessage } from '../../lib/errors.ts';

/** The name a generated iteration is reported under; enough to run it again alone. */
export function iterationName(seed: number, i: number): string {
  return `generated seed=${seed} iteration=${i}`;
}

/** Runs iteration i of the run seeded `seed`. */
export async function runIteration(runner: ModelRunner, seed: number, i: number): Promise<CaseResult> {
  const started = Date.now();
  const name = iterationName(seed, i);
  try {
    const g = generate(seed, i, runner.context());
    await runner.apply([...g.relabels, ...g.policies]);
    const title = `${g.policies.length} random policies${g.relabels.length ? `, ${g.relabels.length} relabels` : ''} (rerun: --no-fixed --seed ${seed} --start ${i} --count 1)`;
    const first = await runner.check(title, expectedByEvaluator(runner.current()), false);
    const m = mutate(seed, i, runner.context(), g);
    if (m.delete.length > 0) await runner.delete(m.delete);
    await runner.apply(m.apply);
    const second = await runner.check(`then: ${m.summary.join('; ')}`, expectedByEvaluator(runner.current()), false);
    const steps = [first, second];
    return { name, passed: steps.every((s) => s.mismatches.length === 0), steps, ms: Date.now() - started };
  } catch (err: unknown) {
    return { name, passed: false, steps: [], ms: Date.now() - started, error: errorMessage(err) };
  } finally {
    await runner.reset();
  }
}

/**
 * A debug knob for testing rollback: with SLUICE_CNI_FAIL_AFTER=<step> in its
 * environment, ADD fails right after that step succeeded, as if the next step
 * had failed, so a test can check that nothing the step made remains. Unset,
 * it costs one environment lookup. Container runtimes pass plugins only the
 * CNI_* variables and their own environment, so it never fires by accident
 * unless an operator sets it on the runtime itself.
 */
import { CniError, CNI_ERR } from './spec.ts';

/** The environment variable naming the step after which ADD fails. */
export const FAIL_AFTER_ENV = 'SLUICE_CNI_FAIL_AFTER';

/** The steps of ADD, in order; each may be named in SLUICE_CNI_FAIL_AFTER. */
export const ADD_STEPS = ['allocate', 'veth', 'pod-config', 'host-config', 'attach', 'register'] as const;

/** One step of ADD. */
export type AddStep = (typeof ADD_STEPS)[number];

/** Throws a code 5 CniError when SLUICE_CNI_FAIL_AFTER names `step`. */
export function failPoint(step: AddStep): void {
  if (process.env[FAIL_AFTER_ENV] === step) {
    throw new CniError(CNI_ERR.IO, `injected failure after ADD step '${step}' (${FAIL_AFTER_ENV} is set: unset it in the runtime's environment)`);
  }
}

/**
 * A check beyond what the upstream tests can see (opt-in: --flow-reuse): once
 * a policy revokes access, a new connection is denied even when it reuses the
 * addresses and ports of an earlier, allowed and closed one. The upstream
 * probes always pick fresh ephemeral ports, so a conntrack that keeps verdicts
 * of finished flows (no TCP state, no expiry) passes them; a client that binds
 * its source port keeps its access for as long as the entry lives.
 */
import { policy } from './case.ts';
import type { CaseResult, ModelRunner } from './runner.ts';
import { errorMessage } from '../../lib/errors.ts';

/** Source ports below the range the probe pool hands out, so the fixed cases never touch them. */
const REUSED_PORT = { tcp: 9001, udp: 9002 } as const;
const FRESH_PORT = { tcp: 9003, udp: 9004 } as const;

/** x/b → x/a on tcp/80 and udp/80: allowed, then denied by a new policy, probed again from the same and a fresh source port. */
export async function runFlowReuse(runner: ModelRunner): Promise<CaseResult> {
  const started = Date.now();
  const lines: string[] = [];
  let passed = true;
  try {
    for (const protocol of ['tcp', 'udp'] as const) {
      const before = await runner.probeOnce({ from: 'x/b', to: 'x/a', protocol, port: 80, sourcePort: REUSED_PORT[protocol] });
      if (!before.ok) throw new Error(`${protocol}/80 x/b -> x/a from port ${REUSED_PORT[protocol]} was blocked before any policy: ${before.error}`);
    }
    await runner.apply([policy('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] })]);
    for (const protocol of ['tcp', 'udp'] as const) {
      for (const [label, sourcePort] of [['fresh', FRESH_PORT[protocol]], ['reused', REUSED_PORT[protocol]]] as const) {
        const after = await runner.probeOnce({ from: 'x/b', to: 'x/a', protocol, port: 80, sourcePort });
        const ok = !after.ok;
        passed &&= ok;
        lines.push(`  ${ok ? 'ok  ' : 'HOLE'} ${protocol}/80 x/b -> x/a after default deny ingress in x, ${label} source port ${sourcePort}: ${after.ok ? 'connected' : 'blocked'} (expected blocked)`);
      }
    }
    const report = passed ? '' : [`  step: allowed flow, then a deny policy, then a new flow with the same 5-tuple`, ...lines].join('\n');
    return { name: 'flow-reuse-after-revocation', passed, steps: [{ title: 'flow reuse', mismatches: [], report }], ms: Date.now() - started };
  } catch (err: unknown) {
    return { name: 'flow-reuse-after-revocation', passed: false, steps: [], ms: Date.now() - started, error: errorMessage(err) };
  } finally {
    await runner.reset();
  }
}

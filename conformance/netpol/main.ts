/**
 * The NetworkPolicy conformance suite: every fixed case, then a generative
 * run, against a local cluster of its own; prints each result, a truth table
 * for every failure, and "N passed, M failed" last. Exits 1 when anything
 * failed.
 *
 * usage: node conformance/netpol/main.ts [--case SUBSTRING]... [--no-fixed]
 *          [--count N] [--seed S] [--start I] [--timeout-ms N] [--flow-reuse] [--list]
 */
import { parseArgs } from 'node:util';
import { CASES } from './cases.ts';
import { runFlowReuse } from './flow-reuse.ts';
import { runIteration } from './generative.ts';
import { ModelRunner, type CaseResult } from './runner.ts';
import { TRUTH_TABLE_LEGEND } from './truth-table.ts';
import { errorMessage } from '../../lib/errors.ts';

const DEFAULT_COUNT = 16;
const DEFAULT_SEED = 1;
const DEFAULT_TIMEOUT_MS = 1000;
const RETRY_TIMEOUT_MS = 3000;

const USAGE = `usage: node conformance/netpol/main.ts [options]
  --case SUBSTRING   run only fixed cases whose name contains it (repeatable)
  --no-fixed         skip the fixed cases
  --count N          generated iterations (default ${DEFAULT_COUNT}; 0 for none)
  --seed S           seed of the generated run (default ${DEFAULT_SEED})
  --start I          first generated iteration (default 0)
  --timeout-ms N     probe timeout (default ${DEFAULT_TIMEOUT_MS}); a probe expected to connect is retried with ${RETRY_TIMEOUT_MS} ms
  --flow-reuse       also check that a revoked peer cannot reconnect by reusing an old flow's source port
  --nodes N          spread the 9 pods over N nodes of the local cluster (default 1: the host)
  --routing MODE     with --nodes: native (default) or vxlan
  --list             print the fixed cases and exit`;

function print(result: CaseResult, legendShown: { done: boolean }): void {
  const seconds = (result.ms / 1000).toFixed(1);
  if (result.passed) {
    console.log(`PASS ${result.name} (${result.steps.length} step${result.steps.length === 1 ? '' : 's'}, ${seconds} s)`);
    return;
  }
  console.log(`FAIL ${result.name} (${seconds} s)`);
  if (!legendShown.done && result.steps.some((s) => s.report.includes('expected (rows'))) {
    console.log(`  ${TRUTH_TABLE_LEGEND}`);
    legendShown.done = true;
  }
  for (const step of result.steps) if (step.report) console.log(step.report);
  if (result.error) console.log(`  error: ${result.error}`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      case: { type: 'string', multiple: true },
      'no-fixed': { type: 'boolean' },
      count: { type: 'string', default: String(DEFAULT_COUNT) },
      seed: { type: 'string', default: String(DEFAULT_SEED) },
      start: { type: 'string', default: '0' },
      'timeout-ms': { type: 'string', default: String(DEFAULT_TIMEOUT_MS) },
      'flow-reuse': { type: 'boolean' },
      nodes: { type: 'string', default: '1' },
      routing: { type: 'string' },
      list: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const filters = values.case ?? [];
  const cases = values['no-fixed'] ? [] : CASES.filter((c) => filters.length === 0 || filters.some((f) => c.name.includes(f)));
  if (values.list) {
    for (const c of CASES) console.log(`${c.name.padEnd(40)} ${c.checks}`);
    return 0;
  }
  const count = Number(values.count);
  const seed = Number(values.seed);
  const start = Number(values.start);
  const timeoutMs = Number(values['timeout-ms']);
  for (const [flag, n] of [['--count', count], ['--seed', seed], ['--start', start], ['--timeout-ms', timeoutMs]] as const) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} must be a non-negative integer`);
  }

  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1) throw new Error('--nodes must be a positive integer');
  if (values.routing && values.routing !== 'native' && values.routing !== 'vxlan') throw new Error('--routing must be native or vxlan');
  const routing = values.routing as 'native' | 'vxlan' | undefined;
  const runner = new ModelRunner({ timeoutMs, retryTimeoutMs: Math.max(RETRY_TIMEOUT_MS, timeoutMs) }, { nodes, routing });
  const stop = async (signal: string) => {
    console.error(`${signal}: removing the cluster`);
    await runner.tearDown();
    process.exit(130);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));

  const started = Date.now();
  const results: CaseResult[] = [];
  const legend = { done: false };
  try {
    await runner.setUp();
    console.log(`model up in ${((Date.now() - started) / 1000).toFixed(1)} s: cluster ${runner.cluster.name}, pod CIDR ${runner.cluster.podCIDR}`);
    for (const c of cases) {
      const r = await runner.runCase(c);
      results.push(r);
      print(r, legend);
    }
    if (values['flow-reuse']) {
      const r = await runFlowReuse(runner);
      results.push(r);
      print(r, legend);
    }
    for (let i = start; i < start + count; i++) {
      const r = await runIteration(runner, seed, i);
      results.push(r);
      print(r, legend);
    }
  } catch (err: unknown) {
    console.log(`FAIL suite set-up or run: ${errorMessage(err)}`);
    results.push({ name: 'suite', passed: false, steps: [], ms: 0 });
  } finally {
    const problems = await runner.tearDown();
    for (const p of problems) console.error(`clean-up: ${p}`);
  }
  const passed = results.filter((r) => r.passed).length;
  const failed = results.length - passed;
  console.log(`run time ${((Date.now() - started) / 1000).toFixed(1)} s (${cases.length} fixed cases, ${count} generated, seed ${seed})`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();

/**
 * `make bench`: every benchmark of bench/ one after the other, each beside
 * its peers, in a short version (under 10 minutes on the 2-core dev VM) or,
 * with --full, at the sizes the issues ask for. Prints each benchmark's table,
 * then a summary of the targets; --write-readme puts the tables, the date and
 * the machine into bench/README.md (between its results markers).
 * Also records how busy the machine was (load average, other Sluice agents
 * running): figures from a busy machine are noisier, never comparable across runs.
 *
 * usage (root, after make): node bench/run-all.ts [--full] [--write-readme] [--only pod-to-pod,cni-vs-bridge,...]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fmt, machine } from './stats.ts';

const NODE = process.execPath;
const HERE = import.meta.dirname;
const README = path.join(HERE, 'README.md');
const RESULTS_START = '<!-- results:start -->';
const RESULTS_END = '<!-- results:end -->';

const { values } = parseArgs({ options: { full: { type: 'boolean', default: false }, 'write-readme': { type: 'boolean', default: false }, only: { type: 'string' } } });
const FULL = values.full;

/** Each benchmark with its short and full arguments. */
const BENCHES: { name: string; file: string; short: string[]; full: string[] }[] = [
  { name: 'pod-to-pod', file: 'pod-to-pod.ts', short: ['--rounds', '2', '--seconds', '2', '--crr-seconds', '1', '--rr-count', '10000'], full: ['--rounds', '5', '--seconds', '5', '--crr-seconds', '3', '--rr-count', '30000'] },
  { name: 'netpol-enforce', file: 'netpol-enforce.ts', short: ['--pods', '100', '--policies', '200', '--flips', '10'], full: ['--pods', '500', '--policies', '200', '--flips', '40'] },
  { name: 'cni-vs-bridge', file: 'cni-vs-bridge.ts', short: ['--pods', '50', '--parallel', '8', '--rounds', '1'], full: ['--pods', '50', '--parallel', '8', '--rounds', '3'] },
  { name: 'agent-resources', file: 'agent-resources.ts', short: ['--pods', '50,100', '--idle-seconds', '5'], full: ['--pods', '100,500', '--idle-seconds', '20'] },
  { name: 'tcp-health-overhead', file: 'tcp-health-overhead.ts', short: ['--rounds', '4', '--seconds', '1'], full: ['--rounds', '8', '--seconds', '3'] },
  { name: 'security-overhead', file: 'security-overhead.ts', short: ['--rounds', '4', '--execs', '1000'], full: ['--rounds', '8', '--execs', '3000'] },
  { name: 'observability-overhead', file: 'observability-overhead.ts', short: ['--rounds', '4', '--seconds', '1'], full: ['--rounds', '8', '--seconds', '3'] },
  { name: 'service-sync', file: 'service-sync.ts', short: ['--services', '1,1000,10000', '--changes', '20'], full: ['--services', '1,1000,10000', '--changes', '100'] },
  { name: 'services-vs-kube-proxy', file: 'services-vs-kube-proxy.ts', short: ['--services', '100,5000', '--rounds', '3', '--seconds', '1'], full: ['--services', '100,5000,10000', '--rounds', '5', '--seconds', '3'] },
];

/** Other Sluice agents on the machine (tests, other engineers): a sign the figures are taken on a busy machine. */
function otherAgents(): number {
  let n = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes('sluice\0agent') || cmd.includes('sluice agent')) n++;
    } catch {
      // gone
    }
  }
  return n;
}

function run(file: string, args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(NODE, [path.join(HERE, file), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      process.stdout.write(c);
    });
    // Forward a Ctrl-C so the child cleans up before we exit.
    const forward = () => child.kill('SIGINT');
    process.once('SIGINT', forward);
    child.on('close', (code) => {
      process.removeListener('SIGINT', forward);
      resolve({ code: code ?? 1, stdout });
    });
  });
}

const selected = values.only ? BENCHES.filter((b) => values.only!.split(',').includes(b.name)) : BENCHES;
const startedAt = new Date();
const before = { load: os.loadavg(), agents: otherAgents() };
/** One benchmark's output and the conditions it ran in. */
interface Output {
  name: string;
  args: string[];
  code: number;
  stdout: string;
  conditions: string;
}
const outputs: Output[] = [];
for (const b of selected) {
  const args = FULL ? b.full : b.short;
  console.log(`\n=== ${b.name} ${args.join(' ')}`);
  const t0 = new Date();
  const load0 = os.loadavg();
  const agents0 = otherAgents();
  const r = await run(b.file, args);
  const conditions = `${t0.toISOString()}, ${fmt((Date.now() - t0.getTime()) / 60_000)} min; load average ${load0.map((l) => fmt(l, 2)).join(' ')} before, ${os.loadavg().map((l) => fmt(l, 2)).join(' ')} after; other Sluice agents running: ${agents0} before, ${otherAgents()} after`;
  outputs.push({ name: b.name, args, ...r, conditions });
}
const after = { load: os.loadavg(), agents: otherAgents() };
const wallMin = (Date.now() - startedAt.getTime()) / 60_000;

/** Benchmark sections already in the README, so a run of some benchmarks keeps the others' latest results. */
function readmeSections(): Output[] {
  if (!fs.existsSync(README)) return [];
  const text = fs.readFileSync(README, 'utf8');
  const out: Output[] = [];
  const re = /<!-- bench:([a-z-]+) args="([^"]*)" conditions="([^"]*)" -->\n[\s\S]*?```\n([\s\S]*?)\n```\n<!-- bench:\1:end -->/g;
  for (const m of text.matchAll(re)) out.push({ name: m[1]!, args: m[2]!.split(' ').filter(Boolean), code: 0, stdout: m[4]!, conditions: m[3]! });
  return out;
}
const sections = values['write-readme'] ? [...readmeSections().filter((o) => !outputs.some((x) => x.name === o.name)), ...outputs].sort((a, b) => BENCHES.findIndex((x) => x.name === a.name) - BENCHES.findIndex((x) => x.name === b.name)) : outputs;

/** The JSON line a benchmark printed last (this run's, or the README's when it did not run now). */
function jsonOf(name: string): Record<string, unknown> | null {
  const out = sections.find((o) => o.name === name);
  const line = out?.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  return line ? (JSON.parse(line) as Record<string, unknown>) : null;
}

const targets: string[] = [];
const verdict = (ratio: number, goal: number, higherIsBetter: boolean) =>
  !Number.isFinite(ratio) ? 'not measured' : (higherIsBetter ? ratio >= goal : ratio <= goal) ? `met (${fmt(ratio, 2)}x, goal ${higherIsBetter ? '>=' : '<='} ${goal}x)` : `MISSED (${fmt(ratio, 2)}x, goal ${higherIsBetter ? '>=' : '<='} ${goal}x)`;
const p2p = jsonOf('pod-to-pod') as { datapaths: Record<string, { gbps1: number; connPerSecond1: number; connPerSecond8: number }> } | null;
if (p2p) {
  const d = p2p.datapaths;
  const veth = d['bare veth pair']!.gbps1;
  const tenK = Object.keys(d).find((k) => k.startsWith('sluice, 10,000'));
  targets.push(`single-stream throughput, sluice without policy >= 1.0x bare veth: ${verdict(d['sluice, no policy']!.gbps1 / veth, 1.0, true)}`);
  if (tenK) targets.push(`single-stream throughput, ${tenK} >= 1.0x bare veth: ${verdict(d[tenK]!.gbps1 / veth, 1.0, true)}`);
  targets.push(`single-stream throughput, sluice without policy above the bridge plugin: ${verdict(d['sluice, no policy']!.gbps1 / d['bridge plugin']!.gbps1, 1.0, true)}`);
  for (const k of [1, 8] as const) {
    const key = `connPerSecond${k}` as const;
    targets.push(`connection rate (${k} in flight), sluice without policy >= bridge plugin: ${verdict(d['sluice, no policy']![key] / d['bridge plugin']![key], 1.0, true)}`);
  }
}
const cni = jsonOf('cni-vs-bridge') as { addP50RatioSerial: number; addP50RatioParallel: number } | null;
if (cni) {
  targets.push(`CNI ADD p50 serial <= 1.5x bridge plugin: ${verdict(cni.addP50RatioSerial, 1.5, false)}`);
  targets.push(`CNI ADD p50 8 in parallel <= 1.5x bridge plugin: ${verdict(cni.addP50RatioParallel, 1.5, false)}`);
}
const tcpHealth = jsonOf('tcp-health-overhead') as { medians: Record<string, { ratio: number }> } | null;
if (tcpHealth) {
  for (const figure of ['conn/s x1', 'conn/s x8', 'Gbit/s 1 stream']) {
    targets.push(`${figure} with TCP health tracing attached >= 0.95x detached (issue 18): ${verdict(tcpHealth.medians[figure]?.ratio ?? NaN, 0.95, true)}`);
  }
}
const quiet = before.load[0]! < 1 && after.load[0]! < 1.5 && before.agents === 0 && after.agents === 0;
const env = `${startedAt.toISOString()}, ${machine().cpu}, ${machine().cores} cores, Linux ${os.release()}; ${FULL ? 'full' : 'short'} run, ${fmt(wallMin)} min; load average ${before.load.map((l) => fmt(l, 2)).join(' ')} before, ${after.load.map((l) => fmt(l, 2)).join(' ')} after; other Sluice agents running: ${before.agents} before, ${after.agents} after (${quiet ? 'quiet machine' : 'BUSY machine: figures are noisier than usual'})`;
console.log(`\n=== targets\n${targets.map((t) => `- ${t}`).join('\n')}\n\n${env}`);

if (values['write-readme']) {
  const text = fs.readFileSync(README, 'utf8');
  const start = text.indexOf(RESULTS_START);
  const end = text.indexOf(RESULTS_END);
  if (start < 0 || end < 0) throw new Error(`${README} has no ${RESULTS_START} ... ${RESULTS_END} section`);
  const tables = sections
    .filter((o) => o.code === 0)
    .map((o) => `<!-- bench:${o.name} args="${o.args.join(' ')}" conditions="${o.conditions}" -->\n### ${o.name} (\`node bench/${o.name}.ts ${o.args.join(' ')}\`)\n\n_${o.conditions}_\n\n\`\`\`\n${o.stdout.trim()}\n\`\`\`\n<!-- bench:${o.name}:end -->`)
    .join('\n\n');
  const section = `${RESULTS_START}\n_Last run: ${env}_\n\nTargets (from the latest run of each benchmark):\n${targets.map((t) => `- ${t}`).join('\n')}\n\n${tables}\n${RESULTS_END}`;
  fs.writeFileSync(README, text.slice(0, start) + section + text.slice(end + RESULTS_END.length));
  console.log(`\nwrote the results into ${README}`);
}
process.exitCode = outputs.some((o) => o.code !== 0) ? 1 : 0;

/**
 * The e2e summary: reads the upstream run's JUnit reports (one per ginkgo
 * node) and the pod startup record, and prints specs run, passed, failed
 * (by name), wall times and pod startup, ending with the plain
 * "N passed, N failed" line.
 *
 * usage: node e2e/summary.ts --report-dir DIR --upstream-seconds S --total-seconds S
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

interface Case {
  name: string;
  skipped: boolean;
  failed: boolean;
  seconds: number;
}

/** Test cases of a JUnit XML file (ginkgo v1's reporter: testcase elements with skipped/failure children). */
function casesOf(xml: string): Case[] {
  const cases: Case[] = [];
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (let m; (m = re.exec(xml)); ) {
    const attrs = m[1] ?? '';
    const body = m[3] ?? '';
    const name = /name="([^"]*)"/.exec(attrs)?.[1] ?? '?';
    cases.push({
      name: name.replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>'),
      skipped: /<skipped/.test(body),
      failed: /<failure|<error/.test(body),
      seconds: Number(/time="([^"]*)"/.exec(attrs)?.[1] ?? 0),
    });
  }
  return cases;
}

function main(): void {
  const { values } = parseArgs({ options: { 'report-dir': { type: 'string' }, 'upstream-seconds': { type: 'string' }, 'total-seconds': { type: 'string' } } });
  const dir = values['report-dir'] ?? 'dist/e2e';
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^junit.*\.xml$/.test(f)) : [];
  const ran = files.flatMap((f) => casesOf(fs.readFileSync(path.join(dir, f), 'utf8'))).filter((c) => !c.skipped);
  const failed = ran.filter((c) => c.failed);
  console.log('=== Sluice e2e summary (Kubernetes 1.20 upstream specs) ===');
  for (const c of ran) console.log(`${c.failed ? 'FAIL' : 'pass'}  ${c.seconds.toFixed(0).padStart(4)} s  ${c.name}`);
  // Per spec group ("[sig-network] NetworkPolicy ...", "[sig-network] Services ..."): what each issue counts.
  const groups = new Map<string, Case[]>();
  for (const c of ran) {
    const group = /^\[[^\]]+\] [^ ]+/.exec(c.name)?.[0] ?? 'other';
    groups.set(group, [...(groups.get(group) ?? []), c]);
  }
  for (const [group, cases] of groups) {
    const bad = cases.filter((c) => c.failed).length;
    console.log(`${group}: ${cases.length} run, ${cases.length - bad} passed, ${bad} failed`);
  }
  console.log(`specs run: ${ran.length}; passed: ${ran.length - failed.length}; failed: ${failed.length}`);
  console.log(`upstream run wall time: ${values['upstream-seconds']} s; make e2e wall time: ${values['total-seconds']} s`);
  const startupFile = path.join(dir, 'pod-startup.json');
  if (fs.existsSync(startupFile)) {
    const s = JSON.parse(fs.readFileSync(startupFile, 'utf8')) as { pods: number; medianSeconds: number; p90Seconds: number; maxSeconds: number };
    console.log(`pod startup (creation → first container running, ${s.pods} pods): median ${s.medianSeconds} s, p90 ${s.p90Seconds} s, max ${s.maxSeconds} s`);
  }
  console.log(`e2e: ${ran.length - failed.length} passed, ${failed.length} failed`);
}

main();

/**
 * `sluice policy <ns>/<pod>`'s screen: an endpoint's computed policy as the
 * agent answers it (GET /v1/policy/:namespace/:pod), one block per endpoint.
 * A policy whose object could not be compiled as written is marked where it
 * is listed, with why: its unreadable rules allow nothing, so the allow list
 * alone would not say what its author meant.
 */

/** One endpoint's policy, as the agent answers it. */
export interface ReadablePolicy {
  endpoint: number;
  ips: string[];
  identity: number;
  ingressIsolated: boolean;
  egressIsolated: boolean;
  policies: string[];
  /** The policies above that could not be compiled as written (absent from an older agent). */
  notCompiled?: { policy: string; problems: string[] }[];
  allow: { direction: string; peer: string; port: string }[];
  allowAddresses: { direction: string; prefix: string; ports: string[] }[];
  counters: Record<string, { packets: number }>;
}

/** The lines of the screen for pod `ref`. */
export function renderPolicy(ref: string, eps: ReadablePolicy[]): string[] {
  const out: string[] = [];
  for (const ep of eps) {
    const broken = new Map((ep.notCompiled ?? []).map((n) => [n.policy, n.problems]));
    out.push(`${ref} endpoint ${ep.endpoint} (${ep.ips.join(', ')}), identity ${ep.identity}`);
    out.push(`  policies: ${ep.policies.map((p) => (broken.has(p) ? `${p} (NOT COMPILED)` : p)).join(', ') || '(none)'}`);
    for (const [p, problems] of broken) out.push(`    ${p} NOT COMPILED as written: ${problems.join('; ')}`);
    for (const dir of ['ingress', 'egress']) {
      const isolated = dir === 'ingress' ? ep.ingressIsolated : ep.egressIsolated;
      out.push(`  ${dir}: ${isolated ? 'isolated, allowed:' : 'not isolated (everything allowed)'}`);
      if (!isolated) continue;
      const rows = [
        ...ep.allow.filter((a) => a.direction === dir).map((a) => `${a.peer} ${a.port}`),
        ...ep.allowAddresses.filter((a) => a.direction === dir).map((a) => `${a.prefix} ${a.ports.join(' ') || '(excepted: nothing)'}`),
      ];
      for (const row of rows.length ? rows : ['(nothing)']) out.push(`    ${row}`);
    }
    const counters = Object.entries(ep.counters).map(([k, v]) => `${k}=${v.packets}`).join(' ');
    if (counters) out.push(`  counters: ${counters}`);
  }
  return out;
}

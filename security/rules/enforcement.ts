/**
 * What the kernel must enforce for a kill or deny-connect rule. The kernel
 * acts before userspace sees the event (SIGKILL from the exec hook, EPERM from
 * the cgroup connect hook), so it only knows what fits its maps: binaries by
 * name or path, ports, and which pods. A rule's condition must therefore
 * reduce to a conjunction of:
 *
 *   kill:          evt.type = execve, one set of binaries (proc.name and/or
 *                  proc.exepath with =, in, or an `or` of those), and a pod scope;
 *   deny-connect:  evt.type = connect, ports (fd.sport =, in: denied;
 *                  !=, not in: everything else denied), and a pod scope.
 *
 * The pod scope is any condition on k8s.ns.name, k8s.pod.name, pod labels and
 * `container.id != host`, and must be false for host processes: Sluice never
 * kills or refuses on the host itself, so a rule that would match host
 * processes is refused rather than enforced on only part of what it says.
 * Anything else (user.uid, proc.pname, exclusions of binaries) is a load
 * error naming the term, never a silent downgrade to alert.
 */
import type { RuleAction, SecurityEvent } from '../../contract/security.ts';
import { compileCondition, type Expr, type Predicate } from './condition-compile.ts';
import { eventTypesOf } from './event-types.ts';

/** Which pods a rule applies to, from what the agent knows of a pod. */
export type PodPredicate = (labels: Readonly<Record<string, string>>, namespace: string, name: string) => boolean;

/** A kill rule: SIGKILL at exec for these binaries (a name matches comm, a path the executable) in these pods. */
export interface KillEnforcement {
  action: 'kill';
  rule: string;
  binaries: { names: string[]; paths: string[] };
  pods: PodPredicate;
}

/** A deny-connect rule: EPERM for a connect from these pods to deniedPorts, or to any port outside allowedPorts. */
export type DenyConnectEnforcement = {
  action: 'deny-connect';
  rule: string;
  pods: PodPredicate;
} & ({ deniedPorts: number[]; allowedPorts?: undefined } | { allowedPorts: number[]; deniedPorts?: undefined });

export type Enforcement = KillEnforcement | DenyConnectEnforcement;

/** The kernel keeps at most 15 bytes of a process name (TASK_COMM_LEN - 1). */
const COMM_MAX = 15;
const TYPE_FIELDS = new Set(['evt.type', 'evt.dir']);
const BINARY_FIELDS = new Set(['proc.name', 'proc.exepath']);

/** Reduces a kill or deny-connect rule's condition to what the kernel enforces; throws an Error saying what does not fit. */
export function enforcementOf(rule: string, action: Exclude<RuleAction, 'alert'>, expr: Expr): Enforcement {
  const terms = conjuncts(expr);
  const typeTerms: Expr[] = [];
  const podTerms: Expr[] = [];
  const otherTerms: Expr[] = [];
  for (const t of terms) {
    const fields = fieldsOf(t);
    if ([...fields].every((f) => TYPE_FIELDS.has(f))) typeTerms.push(t);
    else if ([...fields].every(isPodField)) podTerms.push(t);
    else otherTerms.push(t);
  }
  const wanted = action === 'kill' ? 'execve' : 'connect';
  const types = eventTypesOf({ kind: 'and', items: typeTerms });
  if (typeTerms.length === 0 || types.size !== 1 || !types.has(wanted)) {
    throw new Error(`the condition must limit evt.type to ${wanted} (with and), as the kernel enforces it at ${action === 'kill' ? 'exec' : 'connect'}`);
  }
  const pods = podPredicate(podTerms);
  return action === 'kill' ? { action, rule, binaries: binariesOf(otherTerms), pods } : { action, rule, pods, ...portsOf(otherTerms) };
}

function binariesOf(terms: readonly Expr[]): KillEnforcement['binaries'] {
  if (terms.length === 0) throw new Error('the condition names no binaries: add proc.name in (...) or proc.exepath in (...)');
  if (terms.length > 1) {
    const extra = terms.find((t) => ![...fieldsOf(t)].every((f) => BINARY_FIELDS.has(f))) ?? terms[1]!;
    throw new Error(`the kernel cannot enforce "${exprText(extra)}": a kill rule is evt.type = execve, one set of binaries (proc.name, proc.exepath) and a pod scope`);
  }
  const binaries = { names: [] as string[], paths: [] as string[] };
  collectBinaries(terms[0]!, binaries);
  const long = binaries.names.find((n) => Buffer.byteLength(n) > COMM_MAX);
  if (long) throw new Error(`proc.name ${long} is longer than the kernel's ${COMM_MAX}-byte process name and could never match; use proc.exepath`);
  const relative = binaries.paths.find((p) => !p.startsWith('/'));
  if (relative !== undefined) throw new Error(`proc.exepath ${relative} is not an absolute path`);
  return { names: [...new Set(binaries.names)], paths: [...new Set(binaries.paths)] };
}

function collectBinaries(t: Expr, into: KillEnforcement['binaries']): void {
  if (t.kind === 'or') {
    for (const i of t.items) collectBinaries(i, into);
    return;
  }
  if (t.kind === 'check' && BINARY_FIELDS.has(t.field.name) && (t.op === '=' || t.op === '==' || t.op === 'in')) {
    (t.field.name === 'proc.name' ? into.names : into.paths).push(...t.values.map(String));
    return;
  }
  throw new Error(`the kernel cannot enforce "${exprText(t)}": binaries are a set (proc.name or proc.exepath with = or in, or an or of those), with no exclusions`);
}

function portsOf(terms: readonly Expr[]): { deniedPorts: number[] } | { allowedPorts: number[] } {
  if (terms.length === 0) throw new Error('the condition names no ports: add fd.sport in (...) for the ports to deny, or not fd.sport in (...) for the only ones allowed');
  // The condition holds when the port is in every denied set and in no allowed one.
  let denied: Set<number> | undefined;
  const allowed = new Set<number>();
  for (const t of terms) {
    const p = portTerm(t);
    if (p.deny) denied = denied ? new Set([...denied].filter((x) => p.ports.includes(x))) : new Set(p.ports);
    else for (const x of p.ports) allowed.add(x);
  }
  if (denied) return { deniedPorts: [...denied].filter((x) => !allowed.has(x)).sort((a, b) => a - b) };
  return { allowedPorts: [...allowed].sort((a, b) => a - b) };
}

function portTerm(t: Expr): { deny: boolean; ports: number[] } {
  const negated = t.kind === 'not';
  const c = t.kind === 'not' ? t.item : t;
  if (c.kind === 'check' && c.field.name === 'fd.sport') {
    const ports = c.values as number[];
    if (c.op === '=' || c.op === '==' || c.op === 'in') return { deny: !negated, ports };
    if (c.op === '!=' && !negated) return { deny: false, ports };
  }
  throw new Error(`the kernel cannot enforce "${exprText(t)}": a deny-connect rule is evt.type = connect, fd.sport (=, in, !=, not in) and a pod scope`);
}

/** The pod scope as a predicate on what the agent knows of a pod; throws when it also holds for host processes. */
function podPredicate(terms: readonly Expr[]): PodPredicate {
  for (const t of terms) checkContainerId(t);
  const scope: Predicate = compileCondition({ kind: 'and', items: [...terms] });
  const host: SecurityEvent = { time: '', type: 'execve', host: true, proc: { pid: 0, ppid: 0, uid: 0, name: '', exepath: '', args: [], pname: '' } };
  if (terms.length === 0 || scope(host)) {
    throw new Error('the rule must be scoped to pods (container.id != host, k8s.ns.name, k8s.pod.name or a pod label): Sluice kills and refuses only in pods, never on the host');
  }
  return (labels, namespace, name) =>
    scope({ ...host, host: false, pod: { namespace, name, labels: { ...labels }, netnsInode: 0 } });
}

/** container.id can only tell host from pods here: the kernel keys pods by network namespace, not container id. */
function checkContainerId(t: Expr): void {
  if (t.kind === 'check') {
    if (t.field.name === 'container.id' && !((t.op === '=' || t.op === '==' || t.op === '!=') && t.values[0] === 'host')) {
      throw new Error(`the kernel cannot enforce "${exprText(t)}": container.id can only be compared with host`);
    }
  } else if (t.kind === 'not') checkContainerId(t.item);
  else for (const i of t.items) checkContainerId(i);
}

function isPodField(name: string): boolean {
  return name === 'container.id' || name === 'k8s.ns.name' || name === 'k8s.pod.name' || name.startsWith('k8s.pod.label');
}

function conjuncts(expr: Expr): Expr[] {
  return expr.kind === 'and' ? expr.items.flatMap(conjuncts) : [expr];
}

function fieldsOf(expr: Expr, into = new Set<string>()): Set<string> {
  if (expr.kind === 'check') into.add(expr.field.name);
  else if (expr.kind === 'not') fieldsOf(expr.item, into);
  else for (const i of expr.items) fieldsOf(i, into);
  return into;
}

/** A condition written back (macros and lists expanded), for error messages. */
export function exprText(expr: Expr): string {
  switch (expr.kind) {
    case 'and':
    case 'or':
      return expr.items.map((i) => (i.kind === 'and' || i.kind === 'or' ? `(${exprText(i)})` : exprText(i))).join(` ${expr.kind} `);
    case 'not':
      return expr.item.kind === 'check' ? `not ${exprText(expr.item)}` : `not (${exprText(expr.item)})`;
    case 'check': {
      const v = expr.values.map(String);
      if (expr.op === 'exists') return `${expr.field.name} exists`;
      if (expr.op === 'in' || expr.op === 'pmatch') return `${expr.field.name} ${expr.op} (${v.join(', ')})`;
      return `${expr.field.name} ${expr.op} ${v[0]}`;
    }
  }
}

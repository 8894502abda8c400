/**
 * A NetworkPolicy spec as it came from a datastore → one the compiler can
 * always compile, and what of it could not be read. Pure.
 *
 * The API server rejects most of what this catches, but not everything
 * reaches Sluice through it (the local datastore is a directory anyone can
 * write), and a compiler that throws on one object stops the whole node's
 * policy. What cannot be compiled fails closed, never open: a policy that
 * selects a pod isolates it, so its broken parts must not leave the pod
 * reachable.
 * - A rule that cannot be read allows nothing (it keeps its place, so the
 *   rule numbers `sluice explain` gives stay the author's).
 * - A podSelector that cannot be read selects every pod of the namespace.
 * - policyTypes that cannot be read isolate both directions; a direction
 *   whose rule list is not a list is isolated and allows nothing.
 */
import { parseCidrMasked, type Cidr } from '../lib/cidr.ts';
import type { LabelSelector, LabelSelectorRequirement, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule } from './types.ts';

/** The compilable policy and why parts of it were replaced (empty: the object compiled as written). */
export interface CheckedPolicy {
  policy: NetworkPolicy;
  problems: string[];
}

const PROTOCOLS = new Set(['TCP', 'UDP', 'SCTP']);
const OPERATORS = new Set(['In', 'NotIn', 'Exists', 'DoesNotExist']);
const MAX_PORT = 65535;

/** The label a rule that allows nothing selects on (it matches no value): `sluice explain` shows it as the rule's peer. */
export const NOT_COMPILED_LABEL = 'sluice.io/rule-not-compiled';

/** A selector that selects nothing: In with no values. */
const SELECTS_NOTHING: LabelSelector = { matchExpressions: [{ key: NOT_COMPILED_LABEL, operator: 'In', values: [] }] };

/** A rule that allows nothing: its one peer selects no pod and no address. */
function nothingRule(direction: 'ingress' | 'egress'): NetworkPolicyRule {
  return direction === 'ingress' ? { from: [{ podSelector: SELECTS_NOTHING }] } : { to: [{ podSelector: SELECTS_NOTHING }] };
}

/** True for the rule put in place of one that could not be read (it allows nothing). */
export function isNotCompiledRule(rule: NetworkPolicyRule): boolean {
  const peers = rule.from ?? rule.to ?? [];
  return peers.length === 1 && isNotCompiledSelector(peers[0]!.podSelector);
}

/** True for the selector of that rule's one peer. */
export function isNotCompiledSelector(s: LabelSelector | undefined): boolean {
  return s?.matchExpressions?.some((r) => r.key === NOT_COMPILED_LABEL) ?? false;
}

/** The problems (from checkPolicy) of rule `index` of `direction`, without their consequence: why it was not compiled. */
export function ruleProblems(problems: string[], direction: 'ingress' | 'egress', index: number): string[] {
  const path = `${direction}[${index}]`;
  return problems.filter((p) => p.startsWith(`${path}.`) || p.startsWith(`${path}:`)).map((p) => p.replace(/ \(this rule allows nothing\)$/, ''));
}

/** A spec field that cannot be read; path names it as the author wrote it (ingress[0].ports[1].port). */
class Unreadable extends Error {}

function fail(path: string, what: string): never {
  throw new Unreadable(`${path}: ${what}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function absent(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}

function show(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? String(v);
}

/** A list field: absent → undefined; not a list → Unreadable. */
function listAt(v: unknown, path: string): unknown[] | undefined {
  if (absent(v)) return undefined;
  if (!Array.isArray(v)) fail(path, `${show(v)} is not a list`);
  return v;
}

/** A metav1.LabelSelector, rebuilt from what it holds; Unreadable when any part is not a selector. */
export function readSelector(v: unknown, path: string): LabelSelector {
  if (absent(v)) return {};
  if (!isObject(v)) fail(path, `${show(v)} is not a label selector`);
  const out: LabelSelector = {};
  if (!absent(v.matchLabels)) {
    if (!isObject(v.matchLabels)) fail(`${path}.matchLabels`, `${show(v.matchLabels)} is not a map of labels`);
    for (const [key, value] of Object.entries(v.matchLabels)) {
      if (typeof value !== 'string') fail(`${path}.matchLabels.${key}`, `${show(value)} is not a string`);
    }
    out.matchLabels = { ...(v.matchLabels as Record<string, string>) };
  }
  const expressions = listAt(v.matchExpressions, `${path}.matchExpressions`);
  if (expressions) out.matchExpressions = expressions.map((e, i) => readRequirement(e, `${path}.matchExpressions[${i}]`));
  return out;
}

function readRequirement(v: unknown, path: string): LabelSelectorRequirement {
  if (!isObject(v)) fail(path, `${show(v)} is not a requirement`);
  if (typeof v.key !== 'string' || v.key === '') fail(`${path}.key`, `${show(v.key)} is not a label key`);
  if (typeof v.operator !== 'string' || !OPERATORS.has(v.operator)) fail(`${path}.operator`, `${show(v.operator)} is not In, NotIn, Exists or DoesNotExist`);
  const operator = v.operator as LabelSelectorRequirement['operator'];
  const values = listAt(v.values, `${path}.values`) ?? [];
  if (values.some((x) => typeof x !== 'string')) fail(`${path}.values`, `${show(values)} is not a list of strings`);
  if ((operator === 'In' || operator === 'NotIn') && values.length === 0) fail(`${path}.values`, `${operator} needs at least one value`);
  if ((operator === 'Exists' || operator === 'DoesNotExist') && values.length > 0) fail(`${path}.values`, `${operator} takes no values`);
  return operator === 'In' || operator === 'NotIn' ? { key: v.key, operator, values: values as string[] } : { key: v.key, operator };
}

function readCidr(v: unknown, path: string): Cidr {
  if (typeof v !== 'string') fail(path, `${show(v)} is not a CIDR`);
  try {
    return parseCidrMasked(v);
  } catch {
    return fail(path, `${show(v)} is not a CIDR`);
  }
}

function readPeer(v: unknown, path: string): NetworkPolicyPeer {
  if (!isObject(v)) fail(path, `${show(v)} is not a peer`);
  const selectors = !absent(v.podSelector) || !absent(v.namespaceSelector);
  if (!absent(v.ipBlock)) {
    if (selectors) fail(path, 'ipBlock cannot be combined with podSelector or namespaceSelector');
    if (!isObject(v.ipBlock)) fail(`${path}.ipBlock`, `${show(v.ipBlock)} is not an ipBlock`);
    const cidr = readCidr(v.ipBlock.cidr, `${path}.ipBlock.cidr`);
    const except = (listAt(v.ipBlock.except, `${path}.ipBlock.except`) ?? []).map((x, i) => {
      const c = readCidr(x, `${path}.ipBlock.except[${i}]`);
      if (c.family !== cidr.family) fail(`${path}.ipBlock.except[${i}]`, `${show(x)} is not of the family of ${cidr.text}`);
      return c.text;
    });
    return { ipBlock: { cidr: cidr.text, except } };
  }
  if (!selectors) fail(path, 'a peer needs a podSelector, a namespaceSelector or an ipBlock');
  const out: NetworkPolicyPeer = {};
  if (!absent(v.podSelector)) out.podSelector = readSelector(v.podSelector, `${path}.podSelector`);
  if (!absent(v.namespaceSelector)) out.namespaceSelector = readSelector(v.namespaceSelector, `${path}.namespaceSelector`);
  return out;
}

function readPortNumber(v: number, path: string): number {
  if (!Number.isInteger(v) || v < 1 || v > MAX_PORT) fail(path, `${show(v)} is not a port (1-${MAX_PORT})`);
  return v;
}

function readPort(v: unknown, path: string): NetworkPolicyPort {
  if (!isObject(v)) fail(path, `${show(v)} is not a port`);
  const out: NetworkPolicyPort = {};
  if (!absent(v.protocol)) {
    if (typeof v.protocol !== 'string' || !PROTOCOLS.has(v.protocol)) fail(`${path}.protocol`, `${show(v.protocol)} is not TCP, UDP or SCTP`);
    out.protocol = v.protocol as NetworkPolicyPort['protocol'];
  }
  let number: number | null = null;
  if (!absent(v.port)) {
    if (typeof v.port === 'number') number = readPortNumber(v.port, `${path}.port`);
    else if (typeof v.port === 'string' && /^\d+$/.test(v.port)) number = readPortNumber(Number(v.port), `${path}.port`);
    else if (typeof v.port === 'string' && v.port !== '') out.port = v.port; // a named port: resolved on the pods
    else fail(`${path}.port`, `${show(v.port)} is neither a port number nor a port name`);
    if (number !== null) out.port = number;
  }
  if (!absent(v.endPort)) {
    if (number === null) fail(`${path}.endPort`, 'needs a numeric port');
    if (typeof v.endPort !== 'number') fail(`${path}.endPort`, `${show(v.endPort)} is not a port`);
    readPortNumber(v.endPort, `${path}.endPort`);
    if (v.endPort < number) fail(`${path}.endPort`, `${v.endPort} is below port ${number}`);
    out.endPort = v.endPort;
  }
  return out;
}

function readRule(v: unknown, direction: 'ingress' | 'egress', path: string): NetworkPolicyRule {
  if (absent(v)) return {};
  if (!isObject(v)) fail(path, `${show(v)} is not a rule`);
  const field = direction === 'ingress' ? 'from' : 'to';
  const out: NetworkPolicyRule = {};
  const peers = listAt(v[field], `${path}.${field}`);
  if (peers) out[field] = peers.map((p, i) => readPeer(p, `${path}.${field}[${i}]`));
  const ports = listAt(v.ports, `${path}.ports`);
  if (ports) out.ports = ports.map((p, i) => readPort(p, `${path}.ports[${i}]`));
  return out;
}

/** Runs read; on Unreadable records the problem (with what it means) and returns the fallback. */
function orElse<T>(problems: string[], consequence: string, read: () => T, fallback: () => T): T {
  try {
    return read();
  } catch (err: unknown) {
    if (!(err instanceof Unreadable)) throw err;
    problems.push(`${err.message} (${consequence})`);
    return fallback();
  }
}

/**
 * Reads a NetworkPolicy's spec (the object's `spec`, as any datastore holds
 * it) into a policy the compiler can always compile; the parts that cannot be
 * read fail closed (see the top of this file) and are named in problems.
 */
export function checkPolicy(namespace: string, name: string, spec: unknown): CheckedPolicy {
  const problems: string[] = [];
  const s: Record<string, unknown> = isObject(spec) ? spec : {};
  if (!absent(spec) && !isObject(spec)) problems.push(`spec: ${show(spec)} is not an object (every pod of the namespace is isolated both ways)`);
  const policy: NetworkPolicy = {
    namespace,
    name,
    podSelector: orElse(problems, 'every pod of the namespace is selected', () => readSelector(s.podSelector, 'podSelector'), () => ({})),
  };
  const types = orElse(
    problems,
    'both directions are isolated',
    () => {
      const list = listAt(s.policyTypes, 'policyTypes');
      for (const [i, t] of (list ?? []).entries()) if (t !== 'Ingress' && t !== 'Egress') fail(`policyTypes[${i}]`, `${show(t)} is not Ingress or Egress`);
      return list as ('Ingress' | 'Egress')[] | undefined;
    },
    () => ['Ingress', 'Egress'] as ('Ingress' | 'Egress')[],
  );
  if (!isObject(spec) && !absent(spec)) policy.policyTypes = ['Ingress', 'Egress'];
  else if (types && types.length > 0) policy.policyTypes = [...types];
  for (const direction of ['ingress', 'egress'] as const) {
    const rules = orElse(problems, `the pods it selects are isolated in ${direction} and it allows nothing`, () => listAt(s[direction], direction), () => null);
    if (rules === null) {
      // Not a list: the direction isolates (even where policyTypes were left to their default) and allows nothing.
      policy.policyTypes = [...new Set([...(policy.policyTypes ?? defaultTypes(s)), direction === 'ingress' ? 'Ingress' : 'Egress'] as const)];
      policy[direction] = [];
      continue;
    }
    if (rules) {
      policy[direction] = rules.map((r, i) =>
        orElse(problems, 'this rule allows nothing', () => readRule(r, direction, `${direction}[${i}]`), () => nothingRule(direction)),
      );
    }
  }
  return { policy, problems };
}

/** policyTypes as Kubernetes defaults them: Ingress, plus Egress when there are egress rules (anything that is not an empty list counts). */
function defaultTypes(s: Record<string, unknown>): ('Ingress' | 'Egress')[] {
  const egress = s.egress;
  return absent(egress) || (Array.isArray(egress) && egress.length === 0) ? ['Ingress'] : ['Ingress', 'Egress'];
}

/**
 * GET /v1/explain?from=NS/POD&to=NS/POD|IP&port=N[&protocol=TCP|UDP|SCTP][&family=4|6]:
 * is that new flow allowed, and why (policy/explain.ts), for the source
 * pod's egress and the destination pod's ingress.
 *
 * A direction whose pod is an endpoint of this node is judged by the
 * compiled state this agent wrote to its maps (basis "compiled"); the
 * provenance comes from compiling the datastore as it is now, and a
 * disagreement (a sync not yet done) is a warning. A pod of another node is
 * judged there; this agent computes its verdict from the datastore with the
 * same compiler (basis "datastore") and says which node enforces it.
 */
import type { Endpoint } from '../../contract/api-types.ts';
import { ExplainQueryError, KIND_IDENTITY, POLICY_PROTOCOLS, compiledVerdict, explainFlow, type DirectionVerdict, type FlowExplanation, type FlowQuery, type PolicyProtocol } from '../../policy/explain.ts';
import { clusterView, nodeAddresses, policyErrors } from '../datastore/cluster-view.ts';
import { ruleProblems } from '../../policy/policy-check.ts';
import type { EndpointManager } from '../endpoints.ts';
import type { CompiledState } from '../../policy/compile.ts';
import type { Datastore } from '../datastore/datastore.ts';
import { ApiFailure, type Route } from './server.ts';

/** What the explain route reads. */
export interface ExplainRouteContext {
  /** This node's name. */
  node: string;
  endpoints: Pick<EndpointManager, 'list'>;
  /** The policy side (PolicyState): the datastore, the state its last sync compiled, its revision, this node's addresses. */
  policy: {
    readonly datastore: Pick<Datastore, 'objects'>;
    readonly sync: { state(): CompiledState | null };
    readonly revision: number;
    hostAddresses(): string[];
  };
  /** The cluster's Service (ClusterIP) ranges, as the agent was told them. */
  serviceCidrs: string[];
}

/**
 * Where a direction's verdict comes from: "compiled" (this node's maps),
 * "datastore" (another node enforces it; computed here from the datastore),
 * or "none" (the direction does not judge the flow).
 */
export type VerdictBasis = 'compiled' | 'datastore' | 'none';

/** One direction's verdict, with where it is enforced. */
export interface ExplainedDirection extends DirectionVerdict {
  /** The node the pod runs on (spec.nodeName), null when unknown or no pod. */
  node: string | null;
  basis: VerdictBasis;
}

/** The answer of GET /v1/explain (and `sluice explain -o json`). */
export interface ExplainResponse extends Omit<FlowExplanation, 'egress' | 'ingress'> {
  /** The node whose agent answered. */
  answeredBy: string;
  /** The policy revision of this agent's maps (PolicyState.revision). */
  policyRevision: number;
  egress: ExplainedDirection;
  ingress: ExplainedDirection;
}

function protocolOf(text: string | null): PolicyProtocol {
  const p = (text ?? 'TCP').toUpperCase();
  if (!(POLICY_PROTOCOLS as readonly string[]).includes(p)) throw new ApiFailure(400, 'BadRequest', `protocol '${text}' is not TCP, UDP or SCTP`);
  return p as PolicyProtocol;
}

/** The query of GET /v1/explain, checked. */
function queryOf(q: URLSearchParams): FlowQuery {
  const from = q.get('from');
  const to = q.get('to');
  const portText = q.get('port');
  if (!from || !to || !portText) throw new ApiFailure(400, 'BadRequest', 'from, to and port are required: /v1/explain?from=NS/POD&to=NS/POD|IP&port=N');
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 0xffff) throw new ApiFailure(400, 'BadRequest', `port '${portText}' is not 1-65535`);
  const family = q.get('family');
  if (family !== null && family !== '4' && family !== '6') throw new ApiFailure(400, 'BadRequest', `family '${family}' is not 4 or 6`);
  return { from, to, port, protocol: protocolOf(q.get('protocol')), ...(family ? { family: Number(family) as 4 | 6 } : {}) };
}

/** Explains a flow as this agent sees it. */
export function explain(ctx: ExplainRouteContext, query: FlowQuery): ExplainResponse {
  const objects = ctx.policy.datastore.objects();
  const endpoints = ctx.endpoints.list();
  const local = endpoints.map((e) => ({ endpointId: e.id, namespace: e.namespace, pod: e.pod, ips: e.ips }));
  let x: FlowExplanation;
  try {
    x = explainFlow(clusterView(objects), query, {
      local,
      addresses: { host: ctx.policy.hostAddresses(), nodes: nodeAddresses(objects), serviceCidrs: ctx.serviceCidrs },
    });
  } catch (err: unknown) {
    if (err instanceof ExplainQueryError) throw new ApiFailure(/^no pod /.test(err.message) ? 404 : 400, /^no pod /.test(err.message) ? 'NotFound' : 'BadRequest', err.message);
    throw err;
  }
  const nodeOf = (ref: string | null): string | null => {
    if (!ref) return null;
    const obj = objects.pods.find((p) => `${p.metadata.namespace ?? 'default'}/${p.metadata.name}` === ref);
    const node = (obj?.spec as { nodeName?: unknown } | undefined)?.nodeName;
    if (typeof node === 'string' && node) return node;
    return local.some((l) => `${l.namespace}/${l.pod}` === ref) ? ctx.node : null;
  };
  const warnings = [...x.warnings];
  const state = ctx.policy.sync.state();
  const side = (d: DirectionVerdict): ExplainedDirection => {
    const node = nodeOf(d.pod);
    if (!d.judged) return { ...d, node, basis: 'none' };
    if (!d.local) return { ...d, node, basis: 'datastore' };
    // Judged here: the verdict is what this node's maps hold.
    const selfIp = d.direction === 'egress' ? x.from.ip : x.to.ip;
    const peer = d.direction === 'egress' ? x.to : x.from;
    const ep = endpointOf(endpoints, d.pod!, selfIp);
    const live = state && ep ? compiledVerdict(state, ep.id, d.direction, peer.ip, peer.kind === 'pod' ? KIND_IDENTITY.world : KIND_IDENTITY[peer.kind], query.protocol, query.port) : undefined;
    if (live === undefined) {
      warnings.push(`${d.direction} of ${d.pod}: this node has not compiled the endpoint yet; the verdict is computed from the datastore`);
      return { ...d, node, basis: 'datastore' };
    }
    if (live !== d.allowed) {
      warnings.push(
        `${d.direction} of ${d.pod}: this node's maps (policy revision ${ctx.policy.revision}) ${live ? 'allow' : 'deny'} the flow, the datastore as it is now would ${d.allowed ? 'allow' : 'deny'} it: a sync is due; the rules shown are the datastore's`,
      );
    }
    return { ...d, allowed: live, node, basis: 'compiled' };
  };
  const egress = side(x.egress);
  const ingress = side(x.ingress);
  // A policy that cannot be compiled is shown with rules that allow nothing: say why, or the verdict reads as a mystery.
  const errors = new Map(policyErrors(objects).map((e) => [`${e.namespace}/${e.name}`, e.problems]));
  for (const d of [egress, ingress]) {
    for (const m of d.notMatched) {
      if (m.notCompiled !== undefined) m.notCompiled = ruleProblems(errors.get(m.policy) ?? [], m.direction, m.rule).join('; ');
    }
    for (const name of d.policies) {
      const problems = errors.get(name);
      if (problems) warnings.push(`${d.direction} of ${d.pod}: NetworkPolicy ${name} cannot be compiled as written (${problems.join('; ')}); what cannot be read allows nothing`);
    }
  }
  return { ...x, allowed: egress.allowed && ingress.allowed, egress, ingress, warnings, answeredBy: ctx.node, policyRevision: ctx.policy.revision };
}

/** The endpoint of a pod that holds this address (a pod may have several attachments). */
function endpointOf(endpoints: Endpoint[], ref: string, ip: string): Endpoint | undefined {
  const mine = endpoints.filter((e) => `${e.namespace}/${e.pod}` === ref);
  return mine.find((e) => e.ips.includes(ip)) ?? mine[0];
}

/** The explain route. */
export function explainRoute(ctx: ExplainRouteContext): Route {
  return { method: 'GET', pattern: '/v1/explain', handler: ({ query }) => explain(ctx, queryOf(query)) };
}

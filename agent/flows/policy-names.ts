/**
 * The policies a verdict record names: of an allowed flow, the first rule
 * that allows it in each direction that judged it; of a denied one, the
 * policies that isolate the pod in the direction that denied it. Answered by
 * policy/explain.ts, the same reading of the rules `sluice explain` gives,
 * and cached per policy revision: records of one kind of flow cost one
 * explanation, not one each.
 *
 * A new revision means compiling the cluster again, which costs with the
 * cluster (about 200 ms at 20,000 pods). Under churn (a revision every few
 * tens of ms) that would be a compilation per record, so the namer takes a
 * new revision only once REFRESH_FACTOR times the last compilation's
 * duration has passed since it took the last one: at most 1/REFRESH_FACTOR of
 * a core. A cluster compiled in under THROTTLE_FROM_MS (a few thousand pods)
 * is always named from the current revision; a larger one, under churn, from
 * one at most REFRESH_FACTOR compilations old.
 */
import type { FlowPolicyRef, FlowRecord } from '../../contract/flows.ts';
import { explainCompilation, explainFlow, POLICY_PROTOCOLS, type DirectionVerdict, type ExplainOptions, type PolicyProtocol } from '../../policy/explain.ts';
import type { ClusterView } from '../../policy/types.ts';
import { errorMessage } from '../../lib/errors.ts';
import { summaryOf } from './record.ts';

/** What the namer reads; the agent's policy state fits it. */
export interface PolicyNamerSource {
  /** Changes whenever the policies, pods or namespaces change. */
  revision(): number;
  view(): ClusterView;
  explainOptions(): ExplainOptions;
}

/** Answers kept per revision; beyond it, the cache starts over. */
const CACHE_LIMIT = 4096;
/** A new revision is taken once this many times the last compilation's duration has passed. */
export const REFRESH_FACTOR = 10;
/** Compilations faster than this are never held back. */
export const THROTTLE_FROM_MS = 20;

function refOf(text: string): { namespace: string; name: string } {
  const at = text.indexOf('/');
  return { namespace: text.slice(0, at), name: text.slice(at + 1) };
}

/** Names the policies of flow verdict records. */
export class PolicyNamer {
  private readonly source: PolicyNamerSource;
  private revision = -1;
  private view: ClusterView | null = null;
  private options: ExplainOptions | null = null;
  private readonly cache = new Map<string, FlowPolicyRef[] | undefined>();
  private readonly log: (msg: string) => void;
  private readonly now: () => number;
  /** When the current revision was taken, and how long its compilation took (ms). */
  private takenAt = -Infinity;
  private compileMs = 0;

  constructor(source: PolicyNamerSource, log: (msg: string) => void = () => {}, now: () => number = () => performance.now()) {
    this.source = source;
    this.log = log;
    this.now = now;
  }

  /** The policies of a verdict record; undefined when none judged it (or it is not a verdict on a transport flow). */
  policiesOf(r: FlowRecord): FlowPolicyRef[] | undefined {
    if (r.type !== 'flow' || r.direction === '' || !(POLICY_PROTOCOLS as readonly string[]).includes(r.protocol)) return undefined;
    const revision = this.source.revision();
    const hold = this.compileMs >= THROTTLE_FROM_MS ? REFRESH_FACTOR * this.compileMs : 0;
    if (revision !== this.revision && this.now() - this.takenAt >= hold) {
      this.revision = revision;
      this.takenAt = this.now();
      this.compileMs = 0;
      this.view = null;
      this.options = null;
      this.cache.clear();
    }
    const to = r.destination.pod ? `${r.destination.namespace}/${r.destination.pod}` : r.destination.ip;
    const from = r.source.pod ? `${r.source.namespace}/${r.source.pod}` : r.source.ip;
    const key = `${r.verdict}|${r.direction}|${from}|${to}|${r.protocol}|${r.destination.port}`;
    if (this.cache.has(key)) return this.cache.get(key);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    let refs: FlowPolicyRef[] | undefined;
    try {
      refs = this.answer(r, from, to);
    } catch (err: unknown) {
      this.log(`flow records: cannot name the policies of ${summaryOf(r)}: ${errorMessage(err)}`);
      refs = undefined;
    }
    this.cache.set(key, refs);
    return refs;
  }

  private clusterView(): ClusterView {
    this.view ??= this.source.view();
    return this.view;
  }

  /**
   * The explain options of this revision, with its compilation built once:
   * a miss costs judging two pods, not compiling the cluster (a pod sending
   * to many ports makes a miss per port).
   */
  private explainOptions(): ExplainOptions {
    if (!this.options) {
      const started = this.now();
      const options = this.source.explainOptions();
      this.options = { ...options, compilation: explainCompilation(this.clusterView(), options.local) };
      this.compileMs = this.now() - started;
    }
    return this.options;
  }

  private answer(r: FlowRecord, from: string, to: string): FlowPolicyRef[] | undefined {
    // From an address that is no pod's, explain judges the destination's ingress only, with the address's identity.
    if (!r.source.pod && !r.destination.pod) return undefined;
    const x = explainFlow(
      this.clusterView(),
      { from, to, port: r.destination.port, protocol: r.protocol as PolicyProtocol, family: r.source.ip.includes(':') ? 6 : 4 },
      this.explainOptions(),
    );
    if (r.verdict === 'ALLOWED') {
      const refs: FlowPolicyRef[] = [];
      for (const d of [x.egress, x.ingress]) {
        const first = d.judged && d.isolated ? d.allowedBy[0] : undefined;
        if (first) refs.push({ ...refOf(first.policy), direction: d.direction, rule: first.rule });
      }
      return refs;
    }
    const d: DirectionVerdict = r.direction === 'egress' ? x.egress : x.ingress;
    return d.policies.map((p) => ({ ...refOf(p), direction: d.direction }));
  }
}

/**
 * Frees the conntrack and fragment tables. They are plain hashes, not LRUs
 * (in an LRU one pod's flood of new flows or first fragments would evict
 * every other pod's), so entries no packet will match again have to be
 * removed: the datapath's ct_sweep program does that in the kernel, in one
 * BPF_PROG_TEST_RUN that walks both tables and uncharges each removed entry
 * from its endpoint's budget exactly as the per-packet path does. The agent
 * only runs it every few seconds and then forgets the budgets of endpoints
 * that are gone.
 */
import { CT_BUCKET_REMOTE, CT_SHARED_KEY, CT_SWEEP_RESULT, decodeCtSweepResult, decodeU32, type CtSweepResult } from '../../datapath/abi.ts';
import type { BpfMap } from '../../datapath/bpf-map.ts';
import { closeFd, objGet, runSyscallProgram } from '../../datapath/libbpf.ts';
import { errorMessage } from '../../lib/errors.ts';

/** How often the table is swept: a short-lived flow's entry outlives its timeout by at most this. */
export const DEFAULT_CT_SWEEP_INTERVAL_MS = 5000;

export class ConntrackSweeper {
  private readonly progFd: number;
  private readonly ctCounts: BpfMap;
  private readonly liveEndpointIds: () => Iterable<number>;
  private readonly log: (msg: string) => void;
  private timer: NodeJS.Timeout | null = null;

  /**
   * progPath: the pinned ct_sweep program; ctCounts: the per-endpoint budget
   * map; liveEndpointIds: the endpoints registered now.
   */
  constructor(progPath: string, ctCounts: BpfMap, liveEndpointIds: () => Iterable<number>, log: (msg: string) => void) {
    this.ctCounts = ctCounts;
    this.liveEndpointIds = liveEndpointIds;
    this.log = log;
    this.progFd = objGet(progPath, 'program ct_sweep');
  }

  /** One sweep now: expired and stale entries (flows and incomplete datagrams) removed, gone endpoints' budgets dropped. */
  sweep(): CtSweepResult {
    const ctx = Buffer.alloc(CT_SWEEP_RESULT.size);
    runSyscallProgram(this.progFd, ctx, 'program ct_sweep');
    const result = decodeCtSweepResult(ctx);
    this.forgetGoneEndpoints();
    return result;
  }

  /** Sweeps every intervalMs until stop(). */
  start(intervalMs = DEFAULT_CT_SWEEP_INTERVAL_MS): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => {
      try {
        this.sweep();
      } catch (err: unknown) {
        this.log(`conntrack sweep: ${errorMessage(err)}`);
      }
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    closeFd(this.progFd);
  }

  /**
   * Endpoint ids are never reused, so a gone endpoint's budget entry would
   * only take a slot of ct_counts forever. The sweep just removed its flows
   * (stale). Keys are listed before the live set is read: a key listed
   * belongs to an endpoint that existed by then, so a new one is never taken
   * for a gone one. Remote openers' buckets (one per identity) and the
   * shared count stay: a packet may be charging a bucket through a pointer it
   * looked up just before, and a deleted element of this preallocated hash is
   * handed to the next key created, whose count that packet would then
   * change.
   */
  private forgetGoneEndpoints(): void {
    const keys = this.ctCounts.keys();
    const live = new Set(this.liveEndpointIds());
    for (const key of keys) {
      const id = decodeU32(key);
      if (id === CT_SHARED_KEY || id >= CT_BUCKET_REMOTE) continue;
      if (!live.has(id)) this.ctCounts.delete(key);
    }
  }
}

/**
 * The agent's side of the DEL queue: releases what a DEL queued while the
 * agent was down (endpoint out of the maps, addresses back to the pool, TCX
 * link pins removed), at start-up and then periodically.
 */
import { detachTcx } from '../../datapath/tcx.ts';
import { drainDelQueue, type QueuedDel } from '../../contract/del-queue.ts';
import type { EndpointManager } from '../endpoints.ts';
import type { Ipam } from '../../ipam/allocator.ts';

/** How often a running agent looks for DELs queued while it could not be reached (e.g. a timed-out request). */
export const DEL_QUEUE_DRAIN_INTERVAL_MS = 5_000;

/** What draining acts on. */
export interface DelQueueContext {
  ipam: Ipam;
  endpoints: EndpointManager;
  /** The bpffs directory where the CNI pins TCX links. */
  linksDir: string;
}

/** Releases one queued DEL; every part succeeds when its object is already gone. */
export function releaseQueuedDel(ctx: DelQueueContext, entry: QueuedDel): void {
  ctx.endpoints.unregister(entry.containerID, entry.ifname);
  ctx.ipam.release({ containerID: entry.containerID, ifname: entry.ifname });
  // The pins are named after the host veth; a name with a '/' is not one the CNI wrote.
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(entry.hostIfname)) throw new Error(`queued host veth name ${JSON.stringify(entry.hostIfname)} is invalid`);
  detachTcx(`${ctx.linksDir}/${entry.hostIfname}_ingress`);
  detachTcx(`${ctx.linksDir}/${entry.hostIfname}_egress`);
}

/** Drains the queue now and every DEL_QUEUE_DRAIN_INTERVAL_MS; returns a function that stops the timer. */
export function startDelQueueDrain(ctx: DelQueueContext, dir: string, log: (msg: string) => void): () => void {
  const drain = () => drainDelQueue(dir, (entry) => releaseQueuedDel(ctx, entry), log);
  const n = drain();
  if (n > 0) log(`DEL queue: ${n} release(s) queued while the agent was down carried out`);
  const timer = setInterval(drain, DEL_QUEUE_DRAIN_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Releasing an attachment at the agent (endpoint out of the maps, addresses
 * back to the pool), or, when the agent cannot be reached, queueing the
 * release on disk for the agent to carry out when it is back. Used by DEL and
 * by ADD's rollback.
 */
import { agentRequest, AgentUnreachableError } from '../contract/client.ts';
import { DEFAULT_DEL_QUEUE_DIR, queueDel } from '../contract/del-queue.ts';
import { agentSocket } from './agent-errors.ts';
import { CniError, CNI_ERR, type NetConf } from './spec.ts';
import { errorMessage } from '../lib/errors.ts';

/** What became of a release. */
export interface ReleaseOutcome {
  /** Where the agent pins the attachment's TCX links; unknown when the release was queued. */
  linksDir?: string;
  /** The host veth the agent had on record, if it had one. */
  hostIfname?: string;
  /** The queue file, when the agent was unreachable and the release was queued. */
  queuedIn?: string;
  /** Why it was queued. */
  reason?: string;
}

/** The DEL queue directory of the configuration. */
export function delQueueDir(conf: NetConf): string {
  return conf.delQueueDir ?? DEFAULT_DEL_QUEUE_DIR;
}

/**
 * Releases (containerID, ifname) at the agent; queues it when the agent is
 * unreachable. Rejects with code 11 when the agent answered with an error (a
 * retry can fix it) or the queue cannot be written.
 */
export async function releaseAttachment(conf: NetConf, containerID: string, ifname: string, hostIfname: string): Promise<ReleaseOutcome> {
  const socket = agentSocket(conf);
  try {
    const removed = await agentRequest<{ endpoint: { hostIfname: string } | null; linksDir: string }>(
      socket,
      'DELETE',
      `/v1/endpoints/${encodeURIComponent(containerID)}/${encodeURIComponent(ifname)}`,
    );
    const out: ReleaseOutcome = { linksDir: removed.linksDir };
    if (removed.endpoint) out.hostIfname = removed.endpoint.hostIfname;
    return out;
  } catch (err: unknown) {
    if (!(err instanceof AgentUnreachableError)) {
      throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `release ${containerID}/${ifname} at the agent: ${errorMessage(err)}`);
    }
    const dir = delQueueDir(conf);
    try {
      const queuedIn = queueDel(dir, { containerID, ifname, hostIfname, queuedAt: Date.now() });
      return { queuedIn, reason: err.message };
    } catch (qerr: unknown) {
      throw new CniError(
        CNI_ERR.TRY_AGAIN_LATER,
        `release ${containerID}/${ifname}: ${err.message}, and queueing the release in ${dir} failed: ${errorMessage(qerr)}`,
      );
    }
  }
}

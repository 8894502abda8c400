/** STATUS: ready when the agent answers and a pool has room; code 50 or 51 otherwise. */
import { agentRequest } from '../contract/client.ts';
import type { StatusResponse } from '../contract/api-types.ts';
import { agentSocket } from './agent-errors.ts';
import { CniError, CNI_ERR, type NetConf } from './spec.ts';
import { errorMessage } from '../lib/errors.ts';

/** Resolves when the plugin can serve ADD; rejects with code 50 (agent down) or 51 (pool exhausted). */
export async function cmdStatus(conf: NetConf): Promise<void> {
  let status: StatusResponse;
  try {
    status = await agentRequest<StatusResponse>(agentSocket(conf), 'GET', '/v1/status');
  } catch (err: unknown) {
    throw new CniError(CNI_ERR.NOT_AVAILABLE, errorMessage(err));
  }
  if (!status.ready) throw new CniError(CNI_ERR.NOT_AVAILABLE, `the sluice agent on ${status.node} is not ready: ${status.notReady?.join('; ') || 'starting'}`);
  const full = status.pools.filter((p) => p.used >= p.size);
  if (full.length > 0) {
    throw new CniError(CNI_ERR.NOT_AVAILABLE_LIMITED, `pod CIDR ${full.map((p) => p.cidr).join(', ')} is exhausted: no new pods can start on ${status.node}`);
  }
}

/** Turns agent client failures into CNI errors with codes a runtime can act on. */
import { AgentError, AgentUnreachableError } from '../contract/client.ts';
import { CniError, CNI_ERR, DEFAULT_AGENT_SOCKET, type NetConf } from './spec.ts';
import { errorMessage } from '../lib/errors.ts';

/** The agent socket named by the config (parseNetConf fills in the default). */
export function agentSocket(conf: NetConf): string {
  return conf.socket ?? DEFAULT_AGENT_SOCKET;
}

/** A rejection handler mapping agent failures during `what` to CniError; never returns. */
export function toCniError(what: string): (err: unknown) => never {
  return (err: unknown) => {
    if (err instanceof AgentUnreachableError) {
      throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `${what}: ${err.message}`);
    }
    if (err instanceof AgentError && (err.kind === 'PoolExhausted' || err.kind === 'TryAgain')) {
      throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `${what}: ${err.message}`);
    }
    throw new CniError(CNI_ERR.IO, `${what}: ${errorMessage(err)}`);
  };
}

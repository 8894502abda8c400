/** The check ADD and CHECK make of CNI_NETNS before they act in it. */
import type { CniEnv } from './config.ts';
import { CniError, CNI_ERR } from './spec.ts';

/** Throws code 4 unless CNI_NETNS is a network namespace other than the plugin's own (the host's). */
export async function requirePodNetns(env: CniEnv): Promise<void> {
  const { isNetnsPath, isOwnNetns } = await import('../datapath/netns.ts');
  if (!isNetnsPath(env.netns)) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS '${env.netns}' is not a network namespace: the runtime must pass the pod sandbox's netns path`);
  }
  if (isOwnNetns(env.netns)) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS '${env.netns}' is the host's own network namespace: pods with hostNetwork need no CNI; the runtime must pass the pod sandbox's netns path`);
  }
}

/**
 * Stale backends: when a backend leaves a UDP Service, the connected UDP
 * sockets the load balancer pointed at it would keep sending into the void
 * (a DNS client's resolver socket, typically, until it is restarted: cilium
 * #12859, #27300, #35773). They are destroyed with SOCK_DESTROY (what
 * `ss -K` does, here through sock_diag in datapath/sock-diag.ts) in every
 * network namespace of the node's pods and in the host's, so their owners
 * see ECONNABORTED and open a new socket, which the hooks translate to a
 * backend that exists.
 *
 * The filter is the socket's peer (the backend's address and port), which is
 * what a socket the hooks connected has; a socket connected to that pod by
 * its own address is destroyed too, and that pod is no backend any more.
 */
import { destroyUdpSocketsTo, type UdpPeer } from '../../datapath/sock-diag.ts';
import { errorMessage } from '../../lib/errors.ts';

/**
 * Destroys the UDP sockets connected to the backends in the host's network
 * namespace and in each of netnsPaths; resolves with the failures (netns: why),
 * never rejects: a pod gone meanwhile is no failure worth more than a log line.
 */
export async function destroyStaleUdpSockets(backends: UdpPeer[], netnsPaths: string[]): Promise<string[]> {
  if (backends.length === 0) return [];
  const failures: string[] = [];
  // One namespace at a time: entering one moves the agent's main thread there for a moment.
  for (const netns of [undefined, ...netnsPaths]) {
    try {
      await destroyUdpSocketsTo(backends, netns);
    } catch (err: unknown) {
      failures.push(`${netns ?? 'host'}: ${errorMessage(err)}`);
    }
  }
  return failures;
}

/**
 * Stale backends: when a backend leaves a UDP Service, the connected UDP
 * sockets the load balancer pointed at it would keep sending into the void
 * (a DNS client's resolver socket, typically, until it is restarted: cilium
 * #12859, #27300, #35773). They are destroyed with SOCK_DESTROY (`ss -K`) in
 * every network namespace of the node's pods and in the host's, so their
 * owners see ECONNABORTED and open a new socket, which the hooks translate
 * to a backend that exists.
 *
 * The filter is the socket's peer (the backend's address and port), which is
 * what a socket the hooks connected has; a socket connected to that pod by
 * its own address is destroyed too, and that pod is no backend any more.
 */
import { execFile } from 'node:child_process';

/** One `ss -K` per network namespace can take this long before it is abandoned. */
const SS_TIMEOUT_MS = 5_000;

/** The `ss` arguments that destroy UDP sockets connected to any of the backends. */
export function ssKillArgs(backends: { address: string; port: number }[]): string[] {
  const terms = backends.map((b) => `( dst ${b.address.includes(':') ? `[${b.address}]` : b.address} and dport = :${b.port} )`);
  return ['-K', '-n', '-u', '-a', ...terms.join(' or ').split(' ')];
}

function run(cmd: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: SS_TIMEOUT_MS }, (err, _stdout, stderr) => resolve(err ? `${stderr.trim() || err.message}` : null));
  });
}

/**
 * Destroys the UDP sockets connected to the backends in the host's network
 * namespace and in each of netnsPaths; resolves with the failures (netns: why),
 * never rejects: a pod gone meanwhile is no failure worth more than a log line.
 */
export async function destroyStaleUdpSockets(backends: { address: string; port: number }[], netnsPaths: string[]): Promise<string[]> {
  if (backends.length === 0) return [];
  const args = ssKillArgs(backends);
  const results = await Promise.all([
    run('ss', args).then((err) => (err ? `host: ${err}` : null)),
    ...netnsPaths.map((ns) => run('nsenter', [`--net=${ns}`, 'ss', ...args]).then((err) => (err ? `${ns}: ${err}` : null))),
  ]);
  return results.filter((r): r is string => r !== null);
}

/**
 * `sluice ui`: a live service map in the browser. Serves one page on
 * localhost (ui/server.ts) fed by the agent's GET /v1/flows, prints its URL,
 * and runs until SIGINT or SIGTERM.
 */
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import { DEFAULT_SOCKET, type Endpoint } from '../contract/api-types.ts';
import { agentFlowSource } from '../ui/flow-view.ts';
import { startUiServer } from '../ui/server.ts';

const DEFAULT_ADDRESS = '127.0.0.1:0';
const DEFAULT_WINDOW_SEC = 10;

const USAGE = `usage: sluice ui [--address HOST:PORT] [--window SECONDS] [--socket PATH]

  Serves a live service map of this node's agent on http://HOST:PORT/ (default
  ${DEFAULT_ADDRESS}: localhost, any free port) and prints the URL. Pods and the
  other ends of flows are nodes, grouped by namespace; flows are edges,
  coloured by verdict, with new flows/s, L7 requests/s, error share and p50
  latency over the last --window seconds (default ${DEFAULT_WINDOW_SEC}). Below, the flow
  table, with the filters of 'sluice observe'.

  In Kubernetes, in the agent's pod of a node (it shares the node's network):
    POD=$(kubectl -n sluice-system get pod -l app.kubernetes.io/name=sluice --field-selector spec.nodeName=NODE -o name)
    kubectl -n sluice-system exec $POD -- sluice ui --address 127.0.0.1:8090 &
    kubectl -n sluice-system port-forward $POD 8090   # then open http://127.0.0.1:8090/`;

/** HOST:PORT (an IPv6 host in brackets) into its parts. */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`--address ${address}: expected HOST:PORT, e.g. 127.0.0.1:8090`);
  return { host: (m[1] ?? m[2])!, port };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** Runs `sluice ui`; resolves with the exit code once stopped. */
export async function uiCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      address: { type: 'string', default: DEFAULT_ADDRESS },
      window: { type: 'string', default: String(DEFAULT_WINDOW_SEC) },
      socket: { type: 'string', default: process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const { host, port } = parseAddress(values.address);
  const windowSec = Number(values.window);
  if (!(windowSec >= 1 && windowSec <= 3600)) throw new Error(`--window ${values.window}: expected seconds, 1 to 3600`);
  const socket = values.socket;

  const server = await startUiServer(host, port, {
    source: agentFlowSource(socket),
    windowMs: windowSec * 1000,
    pods: async () => (await agentRequest<Endpoint[]>(socket, 'GET', '/v1/endpoints')).map((e) => ({ namespace: e.namespace, pod: e.pod })),
  });
  console.log(`sluice ui: ${server.url}`);
  if (!isLoopback(host)) console.error(`sluice ui: serving on ${host}, not on localhost: whoever reaches it sees this node's flows`);
  console.error(`serving the service map of the agent at ${socket} (Ctrl-C to stop)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  return 0;
}

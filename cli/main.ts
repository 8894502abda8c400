/**
 * sluice: the operator's CLI, and the agent (`sluice agent`). One executable
 * so a node needs only it and sluice-cni.
 */
import { agentRequest, agentStream } from '../contract/client.ts';
import { parseArgs } from 'node:util';
import { DEFAULT_SOCKET, type Endpoint } from '../contract/api-types.ts';
import { statusCommand } from './status.ts';
import { renderPolicy, type ReadablePolicy } from './policy.ts';
import { errorMessage } from '../lib/errors.ts';

const USAGE = `usage: sluice <command>

  agent [flags]        run the node agent (see 'sluice agent --help')
  status [--socket P] [-o json] [--liveness]
                       agent, datastore, policy, map fill, endpoints, pools, counters, recent drops;
                       exits 1 while the agent is not ready (--liveness: 0 whenever it answers)
  endpoints [-o json]  local endpoints
  identities [-o json] security identities and their labels
  policy <ns>/<pod>    the pod's computed policy: isolation, what is allowed, drops
  explain <from ns/pod|ip> <to ns/pod|ip> --port N [--protocol TCP|UDP|SCTP] [-o json]
                       would that new flow be allowed, and by which policy and rule (or why not)
  observe [--follow] [--last N] [--namespace NS] [--pod NS/NAME] [--selector SEL] [--verdict V] [--type flow|drop|l7|alert]
          [--protocol P] [--port N] [--since 5m] [--l7 dns|http] [-o json]
                       flow records: every new flow with its verdict and policies, drops, DNS and HTTP
                       messages with latency; and the events lost (see 'sluice observe --help')
  monitor [--namespace NS] [--pod NS/NAME] [--verdict allowed|denied|dropped] [--type verdict|drop] [-o json]
                       live policy verdicts and drops, with pod names
  security status|events [--pod NS/NAME] [--rule NAME] [--alerts] [--last N] [--follow] [-o json]
                       runtime security: hooks, rules and their errors; process, file and connect events
                       of every pod and the alerts rules raise (Falco's JSON); kill and deny-connect actions
  ipam [-o json] [--socket P]
                       address pools, their use, and every allocation with its pod
  tcp-health [-o json] [--socket P]
                       TCP health per pod: retransmits, connections opened/closed/reset/failed, RTT
  service list [-o json] [--socket P]
                       Service frontends of the socket load balancer, their backends, state and new flows
  ui [--address HOST:PORT] [--window S]
                       a live service map in the browser: pods, flows by verdict, rates, errors, latency
  local ...            a local cluster of network-namespace pods (see 'sluice local --help')
  demo                 a guided tour on a local cluster
  install-cni [flags]  copy the CNI plugin into the node's CNI bin directory (the DaemonSet's init step)`;

function socketFlag(argv: string[]): string {
  const i = argv.indexOf('--socket');
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : (process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET);
}

async function endpoints(argv: string[]): Promise<number> {
  const list = await agentRequest<Endpoint[]>(socketFlag(argv), 'GET', '/v1/endpoints');
  if (argv.includes('json')) {
    console.log(JSON.stringify(list, null, 2));
    return 0;
  }
  console.log('ID\tPOD\tIPS\tHOST-IF\tIFINDEX');
  for (const e of list) console.log(`${e.id}\t${e.namespace}/${e.pod}\t${e.ips.join(',')}\t${e.hostIfname}\t${e.hostIfindex}`);
  return 0;
}

async function identities(argv: string[]): Promise<number> {
  const list = await agentRequest<{ identity: number; reserved?: string; namespace?: string; labels?: Record<string, string> }[]>(
    socketFlag(argv),
    'GET',
    '/v1/identities',
  );
  if (argv.includes('json')) {
    console.log(JSON.stringify(list, null, 2));
    return 0;
  }
  console.log('IDENTITY\tLABELS');
  for (const i of list) {
    const labels = i.reserved ?? `${i.namespace}: ${Object.entries(i.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '(no labels)'}`;
    console.log(`${i.identity}\t${labels}`);
  }
  return 0;
}

async function policy(argv: string[]): Promise<number> {
  const ref = argv.find((a) => a.includes('/'));
  if (!ref) throw new Error('usage: sluice policy <namespace>/<pod> [--socket PATH] [-o json]');
  const [ns, pod] = ref.split('/', 2) as [string, string];
  const eps = await agentRequest<ReadablePolicy[]>(socketFlag(argv), 'GET', `/v1/policy/${encodeURIComponent(ns)}/${encodeURIComponent(pod)}`);
  if (argv.includes('json')) {
    console.log(JSON.stringify(eps, null, 2));
    return 0;
  }
  for (const line of renderPolicy(ref, eps)) console.log(line);
  return 0;
}

async function monitor(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      pod: { type: 'string' },
      verdict: { type: 'string' },
      type: { type: 'string' },
      output: { type: 'string', short: 'o' },
    },
  });
  const query = new URLSearchParams();
  for (const key of ['namespace', 'pod', 'verdict', 'type'] as const) if (values[key]) query.set(key, values[key]!);
  const socket = values.socket ?? process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET;
  if (values.output !== 'json') console.error(`listening for datapath events on ${socket} (Ctrl-C to stop)`);
  return new Promise((resolve) => {
    const stop = agentStream(
      socket,
      `/v1/monitor?${query}`,
      (value) => {
        const e = value as { time: string; summary: string };
        console.log(values.output === 'json' ? JSON.stringify(value) : `${e.time.slice(11, 23)} ${e.summary}`);
      },
      (err) => {
        if (err) console.error(`sluice monitor: ${err.message}`);
        resolve(err ? 1 : 0);
      },
    );
    process.once('SIGINT', () => {
      stop();
      resolve(0);
    });
  });
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'agent': {
      const { runAgent } = await import('../agent/main.ts');
      await runAgent(rest);
      return 0;
    }
    case 'status':
      return statusCommand(rest);
    case 'endpoints':
      return endpoints(rest);
    case 'identities':
      return identities(rest);
    case 'policy':
      return policy(rest);
    case 'security':
      return (await import('./security.ts')).securityCommand(rest);
    case 'observe':
      return (await import('./observe.ts')).observeCommand(rest);
    case 'monitor':
      return monitor(rest);
    case 'explain': {
      const { explainCommand } = await import('./explain.ts');
      return explainCommand(rest);
    }
    case 'ipam': {
      const { ipamCommand } = await import('./ipam.ts');
      return ipamCommand(rest);
    }
    case 'tcp-health': {
      const { tcpHealthCommand } = await import('./tcp-health.ts');
      return tcpHealthCommand(rest);
    }
    case 'service': {
      const { serviceCommand } = await import('./service.ts');
      return serviceCommand(rest);
    }
    case 'ui': {
      const { uiCommand } = await import('./ui.ts');
      return uiCommand(rest);
    }
    case 'local': {
      const { localCommand } = await import('./local/command.ts');
      return localCommand(rest);
    }
    case 'install-cni': {
      const { installCniCommand } = await import('../install/install-cni.ts');
      return installCniCommand(rest);
    }
    case 'demo': {
      const { runDemo } = await import('./demo.ts');
      return runDemo(rest);
    }
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE);
      return 0;
    default:
      console.error(USAGE);
      return 2;
  }
}

/** Exits once stdout has flushed: a pipe reader must get every byte of a large -o json document. */
function exitAfterFlush(code: number): void {
  if (process.stdout.writableLength === 0) process.exit(code);
  const exit = () => process.exit(code);
  process.stdout.once('drain', exit);
  // A reader that went away (`| head`) never drains: leave then too.
  process.stdout.once('error', exit);
  process.stdout.once('close', exit);
}

main(process.argv.slice(2)).then(exitAfterFlush, (err: unknown) => {
  console.error(`sluice: ${errorMessage(err)}`);
  exitAfterFlush(1);
});

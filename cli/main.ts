/**
 * sluice: the operator's CLI, and the agent (`sluice agent`). One executable
 * so a node needs only it and sluice-cni.
 */
import { agentRequest } from '../agent/client.ts';
import { DEFAULT_SOCKET, type Endpoint, type StatusResponse } from '../agent/api-types.ts';

const USAGE = `usage: sluice <command>

  agent [flags]        run the node agent (see 'sluice agent --help')
  status [--socket P]  agent health, pools, endpoints and datapath counters
  endpoints [-o json]  local endpoints
  local ...            a local cluster of network-namespace pods (see 'sluice local --help')
  demo                 a guided tour on a local cluster`;

function socketFlag(argv: string[]): string {
  const i = argv.indexOf('--socket');
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : (process.env.SLUICE_SOCKET ?? DEFAULT_SOCKET);
}

async function status(argv: string[]): Promise<number> {
  const socket = socketFlag(argv);
  const s = await agentRequest<StatusResponse>(socket, 'GET', '/v1/status');
  const counters = await agentRequest<Record<string, { packets: number; bytes: number }>>(socket, 'GET', '/v1/counters');
  if (argv.includes('-o') && argv.includes('json')) {
    console.log(JSON.stringify({ ...s, counters }, null, 2));
    return 0;
  }
  console.log(`node:       ${s.node} (${s.ready ? 'ready' : 'not ready'})`);
  console.log(`datapath:   ${s.datapath.pinDir} (${s.datapath.adopted ? 'adopted pinned programs' : 'loaded at start'})`);
  for (const p of s.pools) console.log(`pool:       ${p.cidr} ${p.used}/${p.size} used`);
  console.log(`endpoints:  ${s.endpoints}`);
  console.log('counters:');
  for (const [name, v] of Object.entries(counters)) console.log(`  ${name.padEnd(22)} ${String(v.packets).padStart(10)} pkts ${String(v.bytes).padStart(12)} bytes`);
  return 0;
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

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'agent': {
      const { runAgent } = await import('../agent/main.ts');
      await runAgent(rest);
      return 0;
    }
    case 'status':
      return status(rest);
    case 'endpoints':
      return endpoints(rest);
    case 'local': {
      const { localCommand } = await import('./local/command.ts');
      return localCommand(rest);
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`sluice: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);

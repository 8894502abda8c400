/**
 * sluice-agent: the node daemon. Loads (or adopts) the pinned datapath, owns
 * IPAM and the endpoint maps, and serves the API on a root-only socket.
 */
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { ensureBpffs } from '../datapath/bpffs.ts';
import { bpfObjectBytes } from '../datapath/bpf-object.ts';
import { loadDatapath } from '../datapath/loader.ts';
import { Ipam } from '../ipam/allocator.ts';
import { serveApi } from './api-server.ts';
import { DEFAULT_SOCKET } from './api-types.ts';
import { EndpointManager } from './endpoints.ts';
import { log } from './log.ts';
import { agentRoutes } from './routes.ts';

/** Defaults of every path the agent uses; each is a flag so several agents can coexist. */
export const AGENT_DEFAULTS = {
  stateDir: '/var/lib/sluice',
  socket: DEFAULT_SOCKET,
  bpfDir: '/sys/fs/bpf/sluice',
  podCIDR: '10.244.0.0/24',
} as const;

const USAGE = `usage: sluice agent [--state-dir DIR] [--socket PATH] [--bpf-dir DIR] [--node-name NAME] [--pod-cidr CIDR]...

  --state-dir DIR   IPAM and endpoint store (default ${AGENT_DEFAULTS.stateDir})
  --socket PATH     root-only API socket (default ${AGENT_DEFAULTS.socket})
  --bpf-dir DIR     bpffs directory for pinned programs, maps and links (default ${AGENT_DEFAULTS.bpfDir})
  --node-name NAME  this node's name (default: the hostname)
  --pod-cidr CIDR   the node's pod CIDR; repeat for dual stack (default ${AGENT_DEFAULTS.podCIDR})`;

/** Runs the agent until SIGTERM or SIGINT. */
export async function runAgent(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'state-dir': { type: 'string', default: AGENT_DEFAULTS.stateDir },
      socket: { type: 'string', default: AGENT_DEFAULTS.socket },
      'bpf-dir': { type: 'string', default: AGENT_DEFAULTS.bpfDir },
      'node-name': { type: 'string', default: os.hostname() },
      'pod-cidr': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const stateDir = values['state-dir'];
  const pinDir = values['bpf-dir'];
  const podCIDRs = values['pod-cidr'] ?? [AGENT_DEFAULTS.podCIDR];
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });

  ensureBpffs();
  const datapath = loadDatapath({ pinDir, objectBytes: bpfObjectBytes() });
  log(`datapath ${datapath.adopted ? 'adopted from' : 'loaded and pinned at'} ${pinDir}`);
  const ipam = new Ipam(`${stateDir}/ipam.db`, podCIDRs);
  const endpoints = new EndpointManager(`${stateDir}/endpoints.db`, datapath.maps);
  const sync = endpoints.resync();
  log(`endpoints restored: ${sync.written} written, ${sync.removed} stale map entries removed`);

  const ctx = { node: values['node-name'], pinDir, ipam, endpoints, datapath };
  const server = await serveApi(values.socket, agentRoutes(ctx), log);
  log(`serving ${values.socket}; node ${ctx.node}, pod CIDRs ${podCIDRs.join(', ')}`);

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log(`${signal}: stopping (pinned programs and maps stay in place)`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  server.close();
  server.closeAllConnections();
  fs.rmSync(values.socket, { force: true });
  endpoints.close();
  ipam.close();
  datapath.close();
}

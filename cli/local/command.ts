/**
 * `sluice local ...`: argument parsing and dispatch for the local cluster
 * commands. Each command declares its own flags and parses them itself, so a
 * flag another command takes is refused, with the usage, rather than ignored.
 */
import net from 'node:net';
import path from 'node:path';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { errorMessage } from '../../lib/errors.ts';
import { clusterDir, loadCluster } from './cluster.ts';
import { localDown } from './down.ts';
import { connect, holdConnection, probe, serve, servePorts } from './probe.ts';
import { askDns, askHttp, serveDns, serveHttp } from './l7.ts';
import { applyManifests, deleteManifests, readManifests, syncAgent } from './apply.ts';
import { createPod, deletePod, listObjects } from './pods.ts';
import { localUp } from './up.ts';
import { removeNode } from './nodes-remove.ts';
import { ROUTING_MODES, type RoutingMode } from '../../agent/routing/plan.ts';

const USAGE = `usage: sluice local <command> [--dir DIR]

  up [--pod-cidr CIDR]... [--name NAME] [--node-name NAME] [--socket PATH] [--state-dir DIR] [--bpf-dir DIR] [--cni-bin PATH]
     [--agent-arg=--FLAG[=VALUE]]... [--metrics-address HOST:PORT] [--nodes N] [--routing native|vxlan]
     [--security-rules PATH]...  runtime security on, with these rules after the defaults
                       start a local cluster: the agent, and the CNI plugin installed as 'sluice'
                       --nodes N (N >= 2): N nodes, each a netns with its own agent, joined by an underlay
                       bridge; the pod CIDR (default 10.244.0.0/16) is split into one slice per node
  down                 remove every pod, netns, link, pin, process and file of the cluster
  pod create <ns>/<name> [--label k=v]... [--node NAME]
  pod delete <ns>/<name>
  node delete <name>   remove a node of a multi-node cluster, with its pods, agent and namespace
  get pods|nodes|namespaces|services -o json
  apply -f FILE        create or update Namespaces, Pods, NetworkPolicies and Services (YAML or JSON, many documents;
                       a Service's clusterIP is kept when given, else allocated from the agents' --service-cidr)
  delete -f FILE [--ignore-not-found]
  probe <from ns/pod> <to ns/pod|ip> [--protocol tcp|udp|icmp] [--port N] [--timeout-ms N] [--family 4|6]
                       exit 0 when the connection succeeds, 1 when it does not
  serve --protocol tcp|udp|dns|http --port N [--name NAME=IP]...   (inside a pod's netns)
                       an echo server, a DNS server for the names given (NXDOMAIN for others),
                       or an HTTP server (500 under /fail, 200 elsewhere)
  ask dns SERVER NAME | ask http URL   (inside a pod's netns)
                       a DNS query or an HTTP GET; prints the rcode and address, or the status

The cluster lives in --dir, $SLUICE_LOCAL_DIR, or /var/lib/sluice/local.`;

const KINDS: Record<string, 'Pod' | 'Node' | 'Namespace' | 'Service'> = {
  service: 'Service', services: 'Service', svc: 'Service',
  pod: 'Pod', pods: 'Pod', po: 'Pod', node: 'Node', nodes: 'Node', no: 'Node', namespace: 'Namespace', namespaces: 'Namespace', ns: 'Namespace',
};

function parseLabels(values: string[] | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const kv of values ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--label '${kv}' must be key=value`);
    labels[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return labels;
}

function parseNodeCount(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--nodes '${value}' must be a positive whole number`);
  return n;
}

function parseRouting(value: string | undefined): RoutingMode | undefined {
  if (value === undefined) return undefined;
  if (!(ROUTING_MODES as readonly string[]).includes(value)) throw new Error(`--routing '${value}' must be one of ${ROUTING_MODES.join(', ')}`);
  return value as RoutingMode;
}

/** Flags every command takes. */
const COMMON = {
  dir: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsOptionsConfig;

const UP = {
  ...COMMON,
  name: { type: 'string' },
  'node-name': { type: 'string' },
  'pod-cidr': { type: 'string', multiple: true },
  socket: { type: 'string' },
  'state-dir': { type: 'string' },
  'bpf-dir': { type: 'string' },
  'cni-bin': { type: 'string' },
  'agent-arg': { type: 'string', multiple: true },
  'security-rules': { type: 'string', multiple: true },
  nodes: { type: 'string' },
  routing: { type: 'string' },
  'metrics-address': { type: 'string' },
} as const satisfies ParseArgsOptionsConfig;
const POD = { ...COMMON, label: { type: 'string', short: 'l', multiple: true }, node: { type: 'string' } } as const satisfies ParseArgsOptionsConfig;
const GET = { ...COMMON, output: { type: 'string', short: 'o' } } as const satisfies ParseArgsOptionsConfig;
const PROBE = {
  ...COMMON,
  protocol: { type: 'string', default: 'tcp' },
  port: { type: 'string', default: '80' },
  'timeout-ms': { type: 'string', default: '2000' },
  family: { type: 'string' },
} as const satisfies ParseArgsOptionsConfig;
const MANIFESTS = { ...COMMON, filename: { type: 'string', short: 'f', multiple: true }, 'ignore-not-found': { type: 'boolean' } } as const satisfies ParseArgsOptionsConfig;
const SERVE = { ...COMMON, protocol: PROBE.protocol, port: PROBE.port, once: { type: 'boolean' }, ports: { type: 'string' }, name: { type: 'string', multiple: true } } as const satisfies ParseArgsOptionsConfig;
const ASK = { ...COMMON, 'timeout-ms': PROBE['timeout-ms'] } as const satisfies ParseArgsOptionsConfig;
const CONNECT = {
  ...COMMON,
  protocol: PROBE.protocol,
  'timeout-ms': PROBE['timeout-ms'],
  'hold-ms': { type: 'string' },
  'interval-ms': { type: 'string', default: '20' },
} as const satisfies ParseArgsOptionsConfig;

/** Every flag of every command: enough to find the command word among flags and their values. */
const ANY = { ...UP, ...POD, ...GET, ...PROBE, ...MANIFESTS, ...SERVE, ...CONNECT } as const satisfies ParseArgsOptionsConfig;

/** One command: argv is the whole argument list (flags may come before the command word). */
type Command = (argv: string[]) => Promise<number>;

/** argv's flags (as options declares them) and its words after the command word. */
function parse<T extends ParseArgsOptionsConfig>(argv: string[], options: T) {
  const config = { args: argv, options, allowPositionals: true, strict: true } as const;
  let parsed;
  try {
    parsed = parseArgs<typeof config>(config);
  } catch (err: unknown) {
    const flag = /Unknown option '([^']+)'/.exec(errorMessage(err))?.[1];
    if (flag === undefined) throw err;
    const command = parseArgs({ args: argv, options: ANY, allowPositionals: true, strict: false }).positionals[0];
    throw new Error(`local ${command}: ${flag} is not one of its flags (sluice local --help lists them)`);
  }
  const { values, positionals } = parsed;
  return { values, words: positionals.slice(1), dir: clusterDir((values as { dir?: string }).dir) };
}

const up: Command = async (argv) => {
  const { values, dir } = parse(argv, UP);
  const c = await localUp({
    dir,
    name: values.name,
    nodeName: values['node-name'],
    podCIDRs: values['pod-cidr'],
    socket: values.socket,
    stateDir: values['state-dir'],
    bpfDir: values['bpf-dir'],
    cniBin: values['cni-bin'],
    // Runtime security rules are the agent's: passed on as absolute paths (the agent runs elsewhere).
    agentArgs: [...(values['agent-arg'] ?? []), ...(values['security-rules'] ?? []).map((p) => `--security-rules=${path.resolve(p)}`)],
    metricsAddress: values['metrics-address'],
    nodes: parseNodeCount(values.nodes),
    routing: parseRouting(values.routing),
  });
  if (c.nodes) {
    const list = c.nodes.map((n) => `${n.name} (${n.address}, pod CIDR ${n.podCIDRs.join(', ')}, agent pid ${n.agentPid}, socket ${n.socket})`);
    console.error(`local cluster '${c.name}' is up with ${c.nodes.length} nodes, ${c.routing ?? 'native'} routing: ${list.join('; ')}`);
    return 0;
  }
  console.error(`local cluster '${c.name}' is up: node ${c.nodeName}, pod CIDR ${c.podCIDRs.join(', ')}, agent pid ${c.agentPid}, socket ${c.socket}`);
  return 0;
};

const down: Command = async (argv) => {
  const { dir } = parse(argv, COMMON);
  const problems = await localDown(dir);
  for (const p of problems) console.error(`warning: ${p}`);
  console.error('local cluster removed');
  return 0;
};

const pod: Command = async (argv) => {
  const { values, words, dir } = parse(argv, POD);
  const [sub, ref] = words;
  if (!ref || (sub !== 'create' && sub !== 'delete')) throw new Error('usage: sluice local pod create|delete <ns>/<name>');
  const config = loadCluster(dir);
  if (sub === 'create') {
    const created = await createPod(config, ref, parseLabels(values.label), values.node);
    // Every node's agent knows the pod (its address in their ipcache) before this returns, as with apply.
    await syncAgent(config);
    console.error(`pod ${ref} created with IP ${String(created.status?.podIP)}`);
    return 0;
  }
  if (!(await deletePod(config, ref))) {
    console.error(`pod ${ref} not found`);
    return 1;
  }
  await syncAgent(config);
  console.error(`pod ${ref} deleted`);
  return 0;
};

const node: Command = async (argv) => {
  const { words, dir } = parse(argv, COMMON);
  const [sub, name] = words;
  if (sub !== 'delete' || !name) throw new Error('usage: sluice local node delete <name>');
  const pods = await removeNode(loadCluster(dir), name);
  console.error(`node ${name} deleted${pods.length ? ` with its pods ${pods.join(', ')}` : ''}`);
  return 0;
};

const get: Command = async (argv) => {
  const { values, words, dir } = parse(argv, GET);
  const kind = KINDS[words[0] ?? ''];
  if (!kind) throw new Error('usage: sluice local get pods|nodes|namespaces|services [-o json]');
  const list = listObjects(loadCluster(dir), kind);
  if (values.output === 'json') {
    console.log(JSON.stringify(list, null, 2));
    return 0;
  }
  for (const item of list.items) {
    const ns = item.metadata.namespace ? `${item.metadata.namespace}/` : '';
    const svc = item.spec as { clusterIP?: string; ports?: { port: number; protocol?: string; nodePort?: number }[] } | undefined;
    const ip = item.status?.podIP
      ? `\t${String(item.status.podIP)}`
      : kind === 'Service' && svc
        ? `\t${svc.clusterIP ?? ''}\t${(svc.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',')}`
        : '';
    const labels = Object.entries(item.metadata.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
    console.log(`${ns}${item.metadata.name}${ip}\t${labels}`);
  }
  return 0;
};

const probeCommand: Command = async (argv) => {
  const { values, words, dir } = parse(argv, PROBE);
  const [from, to] = words;
  if (!from || !to) throw new Error('usage: sluice local probe <from ns/pod> <to ns/pod|ip> [--protocol tcp|udp|icmp] [--port N]');
  const protocol = values.protocol as 'tcp' | 'udp' | 'icmp';
  if (!['tcp', 'udp', 'icmp'].includes(protocol)) throw new Error(`--protocol must be tcp, udp or icmp`);
  const family = values.family === '6' ? 6 : values.family === '4' ? 4 : undefined;
  const ok = await probe(loadCluster(dir), { from, to, protocol, port: Number(values.port), timeoutMs: Number(values['timeout-ms']), family });
  console.log(`${from} -> ${to} ${protocol}${protocol === 'icmp' ? '' : `/${values.port}`}: ${ok ? 'connected' : 'no connection'}`);
  return ok ? 0 : 1;
};

/** apply and delete: what the manifests name, created/updated or removed. */
const manifests = (verb: 'apply' | 'delete'): Command => async (argv) => {
  const { values, dir } = parse(argv, MANIFESTS);
  const files = values.filename ?? [];
  if (files.length === 0) throw new Error(`usage: sluice local ${verb} -f FILE [-f FILE]...`);
  const objects = files.flatMap(readManifests);
  const config = loadCluster(dir);
  const lines = verb === 'apply' ? await applyManifests(config, objects) : await deleteManifests(config, objects, values['ignore-not-found'] ?? false);
  for (const line of lines) console.error(line);
  return 0;
};

// Helpers the probe and the pods run inside pod namespaces.
const serveCommand: Command = async (argv) => {
  const { values } = parse(argv, SERVE);
  if (values.ports) await servePorts(values.ports);
  else if (values.protocol === 'dns') await serveDns(Number(values.port), dnsNames(values.name));
  else if (values.protocol === 'http') await serveHttp(Number(values.port));
  else await serve(values.protocol as 'tcp' | 'udp', Number(values.port), values.once ?? false);
  return 0;
};

/** --name NAME=IPV4, repeatable: the names a DNS server knows. */
function dnsNames(values: string[] | undefined): Record<string, string> {
  const names: Record<string, string> = {};
  for (const kv of values ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0 || net.isIPv4(kv.slice(eq + 1)) === false) throw new Error(`--name '${kv}' must be NAME=IPV4`);
    names[kv.slice(0, eq).toLowerCase()] = kv.slice(eq + 1);
  }
  return names;
}

// A client of those servers: prints the answer (rcode and address, or the HTTP status); exit 1 when none came.
const askCommand: Command = async (argv) => {
  const { values, words } = parse(argv, ASK);
  const [kind, target, name] = words;
  const timeoutMs = Number(values['timeout-ms']);
  if (kind === 'dns' && target && name) console.log(await askDns(target, name, timeoutMs));
  else if (kind === 'http' && target) console.log(await askHttp(target, timeoutMs));
  else throw new Error('usage: sluice local ask dns SERVER NAME | sluice local ask http URL');
  return 0;
};

const connectCommand: Command = async (argv) => {
  const { values, words } = parse(argv, CONNECT);
  const [host, port] = words;
  if (values['hold-ms']) {
    const echoes = await holdConnection(host!, Number(port), Number(values['hold-ms']), Number(values['interval-ms']), Number(values['timeout-ms']));
    console.log(`connection held, ${echoes} echoes`);
    return 0;
  }
  await connect(host!, Number(port), values.protocol as 'tcp' | 'udp', Number(values['timeout-ms']));
  return 0;
};

const COMMANDS: Record<string, Command> = {
  up,
  down,
  pod,
  node,
  get,
  probe: probeCommand,
  apply: manifests('apply'),
  delete: manifests('delete'),
  serve: serveCommand,
  connect: connectCommand,
  ask: askCommand,
};

/** Runs one `sluice local` command; returns the exit code. */
export async function localCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: ANY, allowPositionals: true, strict: false });
  const name = positionals[0];
  if (values.help || !name) {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(USAGE);
    return 2;
  }
  return command(argv);
}

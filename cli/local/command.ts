/** `sluice local ...`: argument parsing and dispatch for the local cluster commands. */
import { parseArgs } from 'node:util';
import { clusterDir, loadCluster } from './cluster.ts';
import { localDown } from './down.ts';
import { connect, holdConnection, probe, serve, servePorts } from './probe.ts';
import { applyManifests, deleteManifests, readManifests, syncAgent } from './apply.ts';
import { createPod, deletePod, listObjects } from './pods.ts';
import { localUp } from './up.ts';
import { removeNode } from './nodes-remove.ts';
import { ROUTING_MODES, type RoutingMode } from '../../agent/routing/plan.ts';

const USAGE = `usage: sluice local <command> [--dir DIR]

  up [--pod-cidr CIDR]... [--name NAME] [--node-name NAME] [--socket PATH] [--state-dir DIR] [--bpf-dir DIR] [--cni-bin PATH]
     [--agent-arg=--FLAG[=VALUE]]... [--metrics-address HOST:PORT] [--nodes N] [--routing native|vxlan]
                       start a local cluster: the agent, and the CNI plugin installed as 'sluice'
                       --nodes N (N >= 2): N nodes, each a netns with its own agent, joined by an underlay
                       bridge; the pod CIDR (default 10.244.0.0/16) is split into one slice per node
  down                 remove every pod, netns, link, pin, process and file of the cluster
  pod create <ns>/<name> [--label k=v]... [--node NAME]
  pod delete <ns>/<name>
  node delete <name>   remove a node of a multi-node cluster, with its pods, agent and namespace
  get pods|nodes|namespaces -o json
  apply -f FILE        create or update Namespaces, Pods and NetworkPolicies (YAML or JSON, many documents)
  delete -f FILE [--ignore-not-found]
  probe <from ns/pod> <to ns/pod|ip> [--protocol tcp|udp|icmp] [--port N] [--timeout-ms N] [--family 4|6]
                       exit 0 when the connection succeeds, 1 when it does not

The cluster lives in --dir, $SLUICE_LOCAL_DIR, or /var/lib/sluice/local.`;

const KINDS: Record<string, 'Pod' | 'Node' | 'Namespace'> = {
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

/** Runs one `sluice local` command; returns the exit code. */
export async function localCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      name: { type: 'string' },
      'node-name': { type: 'string' },
      'pod-cidr': { type: 'string', multiple: true },
      socket: { type: 'string' },
      'state-dir': { type: 'string' },
      'bpf-dir': { type: 'string' },
      'cni-bin': { type: 'string' },
      'agent-arg': { type: 'string', multiple: true },
      nodes: { type: 'string' },
      routing: { type: 'string' },
      node: { type: 'string' },
      'metrics-address': { type: 'string' },
      label: { type: 'string', short: 'l', multiple: true },
      output: { type: 'string', short: 'o' },
      protocol: { type: 'string', default: 'tcp' },
      port: { type: 'string', default: '80' },
      'timeout-ms': { type: 'string', default: '2000' },
      once: { type: 'boolean' },
      ports: { type: 'string' },
      filename: { type: 'string', short: 'f', multiple: true },
      'ignore-not-found': { type: 'boolean' },
      family: { type: 'string' },
      'hold-ms': { type: 'string' },
      'interval-ms': { type: 'string', default: '20' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, sub, ...rest] = positionals;
  if (values.help || !cmd) {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  const dir = clusterDir(values.dir);
  switch (cmd) {
    case 'up': {
      const c = await localUp({
        dir,
        name: values.name,
        nodeName: values['node-name'],
        podCIDRs: values['pod-cidr'],
        socket: values.socket,
        stateDir: values['state-dir'],
        bpfDir: values['bpf-dir'],
        cniBin: values['cni-bin'],
        agentArgs: values['agent-arg'],
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
    }
    case 'down': {
      const problems = await localDown(dir);
      for (const p of problems) console.error(`warning: ${p}`);
      console.error('local cluster removed');
      return 0;
    }
    case 'pod': {
      const ref = rest[0];
      if (!ref || (sub !== 'create' && sub !== 'delete')) throw new Error('usage: sluice local pod create|delete <ns>/<name>');
      const config = loadCluster(dir);
      if (sub === 'create') {
        const pod = await createPod(config, ref, parseLabels(values.label), values.node);
        // Every node's agent knows the pod (its address in their ipcache) before this returns, as with apply.
        await syncAgent(config);
        console.error(`pod ${ref} created with IP ${String(pod.status?.podIP)}`);
        return 0;
      }
      if (!(await deletePod(config, ref))) {
        console.error(`pod ${ref} not found`);
        return 1;
      }
      await syncAgent(config);
      console.error(`pod ${ref} deleted`);
      return 0;
    }
    case 'node': {
      const name = rest[0];
      if (sub !== 'delete' || !name) throw new Error('usage: sluice local node delete <name>');
      const pods = await removeNode(loadCluster(dir), name);
      console.error(`node ${name} deleted${pods.length ? ` with its pods ${pods.join(', ')}` : ''}`);
      return 0;
    }
    case 'get': {
      const kind = KINDS[sub ?? ''];
      if (!kind) throw new Error('usage: sluice local get pods|nodes|namespaces [-o json]');
      const list = listObjects(loadCluster(dir), kind);
      if (values.output === 'json') {
        console.log(JSON.stringify(list, null, 2));
      } else {
        for (const item of list.items) {
          const ns = item.metadata.namespace ? `${item.metadata.namespace}/` : '';
          const ip = item.status?.podIP ? `\t${String(item.status.podIP)}` : '';
          const labels = Object.entries(item.metadata.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
          console.log(`${ns}${item.metadata.name}${ip}\t${labels}`);
        }
      }
      return 0;
    }
    case 'probe': {
      const [from, to] = [sub, rest[0]];
      if (!from || !to) throw new Error('usage: sluice local probe <from ns/pod> <to ns/pod|ip> [--protocol tcp|udp|icmp] [--port N]');
      const protocol = values.protocol as 'tcp' | 'udp' | 'icmp';
      if (!['tcp', 'udp', 'icmp'].includes(protocol)) throw new Error(`--protocol must be tcp, udp or icmp`);
      const family = values.family === '6' ? 6 : values.family === '4' ? 4 : undefined;
      const ok = await probe(loadCluster(dir), { from, to, protocol, port: Number(values.port), timeoutMs: Number(values['timeout-ms']), family });
      console.log(`${from} -> ${to} ${protocol}${protocol === 'icmp' ? '' : `/${values.port}`}: ${ok ? 'connected' : 'no connection'}`);
      return ok ? 0 : 1;
    }
    case 'apply':
    case 'delete': {
      const files = values.filename ?? [];
      if (files.length === 0) throw new Error(`usage: sluice local ${cmd} -f FILE [-f FILE]...`);
      const objects = files.flatMap(readManifests);
      const config = loadCluster(dir);
      const lines = cmd === 'apply' ? await applyManifests(config, objects) : await deleteManifests(config, objects, values['ignore-not-found'] ?? false);
      for (const line of lines) console.error(line);
      return 0;
    }
    // Helpers the probe and the pods run inside pod namespaces.
    case 'serve':
      if (values.ports) {
        await servePorts(values.ports);
        return 0;
      }
      await serve(values.protocol as 'tcp' | 'udp', Number(values.port), values.once ?? false);
      return 0;
    case 'connect':
      if (values['hold-ms']) {
        const echoes = await holdConnection(sub!, Number(rest[0]), Number(values['hold-ms']), Number(values['interval-ms']), Number(values['timeout-ms']));
        console.log(`connection held, ${echoes} echoes`);
        return 0;
      }
      await connect(sub!, Number(rest[0]), values.protocol as 'tcp' | 'udp', Number(values['timeout-ms']));
      return 0;
    default:
      console.error(USAGE);
      return 2;
  }
}

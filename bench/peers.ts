/**
 * The datapaths Sluice is compared with, each a client and a server network
 * namespace wired the way that design wires pods, entirely inside namespaces
 * this process creates (the host's links, routes, sysctls and iptables are
 * never touched), all removed at cleanup:
 * - bare veth: one veth pair straight between the two namespaces (the
 *   practical limit for any veth-based design);
 * - bridge: the reference `bridge` + `host-local` CNI plugins
 *   (/usr/lib/cni, Debian containernetworking-plugins), run exactly as a
 *   runtime runs them, inside a "node" namespace of their own (isGateway, so
 *   the plugin enables forwarding in that namespace only);
 * - iptables: a veth pair per pod routed through a "node" namespace whose
 *   FORWARD chain holds the policy, as iptables-based CNIs enforce it:
 *   established traffic accepted first, then N rules that do not match, then
 *   the one that allows the traffic, then drop.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addNetns, onCleanup, sh } from './cleanup.ts';
import { ECHO_BASE_PORT, ECHO_PORTS, IPERF_PORT } from './net-tool.ts';

/** CNI plugins of Debian's containernetworking-plugins. */
export const REFERENCE_CNI_DIR = '/usr/lib/cni';
/** First destination port of the rules that never match the traffic (20000 + i). */
export const NON_MATCHING_BASE_PORT = 20_000;

/** A client and a server namespace, and the server's address. */
export interface PodPair {
  clientNs: string;
  serverNs: string;
  clientIp: string;
  serverIp: string;
}

/** Two namespaces joined by one veth pair on a /24. */
export function bareVeth(prefix: string): PodPair {
  const pair = { clientNs: `${prefix}-vc`, serverNs: `${prefix}-vs`, clientIp: '10.77.0.1', serverIp: '10.77.0.2' };
  addNetns(pair.clientNs);
  addNetns(pair.serverNs);
  sh('ip', ['-n', pair.clientNs, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pair.serverNs]);
  for (const [ns, ip] of [[pair.clientNs, pair.clientIp], [pair.serverNs, pair.serverIp]] as const) {
    sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  }
  return pair;
}

/** The reference bridge plugin's network config (host-local IPAM in dataDir). */
export function bridgeConf(bridge: string, subnet: string, dataDir: string): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'bench-bridge',
    type: 'bridge',
    bridge,
    isGateway: true,
    ipMasq: false,
    ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir },
  });
}

/** The CNI environment of one invocation. */
export function cniEnv(command: string, containerID: string, netns: string, cniPath: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: containerID, CNI_NETNS: `/var/run/netns/${netns}`, CNI_IFNAME: 'eth0', CNI_PATH: cniPath };
}

/** Two pods wired by the reference bridge plugin in a node namespace of their own. */
export function bridgePods(prefix: string, tool: string): PodPair {
  const node = `${prefix}-bn`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-bridge-'));
  onCleanup(`host-local dir ${dataDir}`, () => fs.rmSync(dataDir, { recursive: true, force: true }));
  addNetns(node);
  const conf = bridgeConf('benchbr0', '10.78.0.0/24', dataDir);
  const ips: string[] = [];
  for (const pod of ['bc', 'bs']) {
    const ns = `${prefix}-${pod}`;
    addNetns(ns);
    const out = spawnCni(tool, node, `${REFERENCE_CNI_DIR}/bridge`, cniEnv('ADD', `${prefix}${pod}`, ns, REFERENCE_CNI_DIR), conf);
    ips.push((JSON.parse(out) as { ips: { address: string }[] }).ips[0]!.address.split('/')[0]!);
  }
  return { clientNs: `${prefix}-bc`, serverNs: `${prefix}-bs`, clientIp: ips[0]!, serverIp: ips[1]! };
}

/** Runs a CNI plugin inside `nodeNs` (through net-tool nsexec); returns its stdout. */
export function spawnCni(tool: string, nodeNs: string, plugin: string, env: NodeJS.ProcessEnv, conf: string): string {
  const r = spawnSync(tool, ['nsexec', `/var/run/netns/${nodeNs}`, plugin], { env, input: conf, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${plugin} ${env.CNI_COMMAND} failed: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Two pods routed through a node namespace whose FORWARD chain enforces policy; setRules(n) loads a ruleset. */
export function iptablesPods(prefix: string): PodPair & { router: string; setRules: (rules: number | null) => void } {
  const router = `${prefix}-in`;
  const pair = { clientNs: `${prefix}-ic`, serverNs: `${prefix}-is`, clientIp: '10.79.1.2', serverIp: '10.79.2.2' };
  addNetns(router);
  addNetns(pair.clientNs);
  addNetns(pair.serverNs);
  const legs = [
    [pair.clientNs, 'vc', pair.clientIp, '10.79.1.1'],
    [pair.serverNs, 'vs', pair.serverIp, '10.79.2.1'],
  ] as const;
  for (const [ns, hostSide, ip, gw] of legs) {
    sh('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', hostSide, 'netns', router]);
    sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', gw]);
    sh('ip', ['-n', router, 'addr', 'add', `${gw}/24`, 'dev', hostSide]);
    sh('ip', ['-n', router, 'link', 'set', hostSide, 'up']);
  }
  // Forwarding in the node namespace only: a new namespace has its own copy of the sysctl.
  sh('ip', ['netns', 'exec', router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  /** null: no ruleset at all (plain routing); n: conntrack shortcut, n non-matching rules, the allow rule, drop. */
  const setRules = (rules: number | null): void => {
    const lines = ['*filter', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]'];
    if (rules === null) {
      lines.push(':FORWARD ACCEPT [0:0]');
    } else {
      lines.push(':FORWARD DROP [0:0]', ':BENCH-POLICY - [0:0]');
      lines.push('-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT', '-A FORWARD -j BENCH-POLICY');
      for (let i = 0; i < rules; i++) {
        lines.push(`-A BENCH-POLICY -s ${pair.clientIp}/32 -d ${pair.serverIp}/32 -p tcp -m tcp --dport ${NON_MATCHING_BASE_PORT + i} -j ACCEPT`);
      }
      lines.push(`-A BENCH-POLICY -s ${pair.clientIp}/32 -d ${pair.serverIp}/32 -p tcp -m multiport --dports ${IPERF_PORT},${ECHO_BASE_PORT}:${ECHO_BASE_PORT + ECHO_PORTS - 1} -j ACCEPT`);
    }
    lines.push('COMMIT', '');
    // The whole filter table of the node namespace is ours: it lives and dies with the namespace.
    sh('ip', ['netns', 'exec', router, 'iptables-restore'], lines.join('\n'));
  };
  return { ...pair, router, setRules };
}

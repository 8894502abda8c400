/**
 * The model every case runs on, as in the upstream e2e tests: namespaces x, y
 * and z, pods a, b and c in each, every pod serving ports 80 and 81 over TCP
 * and UDP under named container ports (serve-80-tcp, ...). Also the state the
 * reference evaluator reads: labels, addresses, ports and policies.
 */
import type { ContainerPort, NamespaceManifest, NetworkPolicy, PodManifest } from './types.ts';

/** Namespace names, in truth-table order. */
export const NAMESPACES = ['x', 'y', 'z'] as const;
/** Pod names within each namespace, in truth-table order. */
export const POD_NAMES = ['a', 'b', 'c'] as const;
/** Every pod as "ns/name", in truth-table order (rows and columns). */
export const PODS: readonly string[] = NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => `${ns}/${p}`));
/** The ports every pod serves. */
export const SERVED_PORTS = [80, 81] as const;
/** The protocols every pod serves on each port. */
export const PROTOCOLS = ['tcp', 'udp'] as const;

/** A transport protocol the suite probes. */
export type Protocol = (typeof PROTOCOLS)[number];
/** One probed (protocol, port), written "tcp/80". */
export type Combo = 'tcp/80' | 'tcp/81' | 'udp/80' | 'udp/81';
/** Every combo, in report order. */
export const COMBOS: readonly Combo[] = ['tcp/80', 'tcp/81', 'udp/80', 'udp/81'];

/** Splits "tcp/80" into protocol and port. */
export function parseCombo(combo: Combo): { protocol: Protocol; port: number } {
  const [protocol, port] = combo.split('/') as [Protocol, string];
  return { protocol, port: Number(port) };
}

/** The named container ports of every model pod. */
export const CONTAINER_PORTS: readonly ContainerPort[] = SERVED_PORTS.flatMap((port) =>
  PROTOCOLS.map((p) => ({ name: `serve-${port}-${p}`, containerPort: port, protocol: p.toUpperCase() as 'TCP' | 'UDP' })),
);

/** The labels a model namespace starts with. */
export function baseNamespaceLabels(ns: string): Record<string, string> {
  return { ns, 'kubernetes.io/metadata.name': ns };
}

/** The labels a model pod starts with. */
export function basePodLabels(pod: string): Record<string, string> {
  return { pod };
}

/** A Namespace manifest with exactly these labels (the metadata.name label is always kept). */
export function namespaceManifest(name: string, labels: Record<string, string> = baseNamespaceLabels(name)): NamespaceManifest {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { ...labels, 'kubernetes.io/metadata.name': name } } };
}

/** A Pod manifest of the model with exactly these labels. */
export function podManifest(ref: string, labels?: Record<string, string>): PodManifest {
  const [namespace, name] = ref.split('/') as [string, string];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace, name, labels: labels ?? basePodLabels(name) },
    spec: { containers: [{ name: 'serve', image: 'none', ports: CONTAINER_PORTS.map((p) => ({ ...p })) }] },
  };
}

/** One pod as the evaluator sees it. */
export interface ModelPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ip: string;
  ports: readonly ContainerPort[];
}

/** Everything that decides reachability: namespaces with labels, pods, policies. */
export interface ClusterState {
  namespaces: Map<string, Record<string, string>>;
  pods: ModelPod[];
  policies: NetworkPolicy[];
}

/** The model's starting state: base labels, the given addresses, no policies. */
export function baseState(ips: Map<string, string>): ClusterState {
  return {
    namespaces: new Map(NAMESPACES.map((ns) => [ns, namespaceManifest(ns).metadata.labels])),
    pods: PODS.map((ref) => {
      const [namespace, name] = ref.split('/') as [string, string];
      const ip = ips.get(ref);
      if (!ip) throw new Error(`no address for pod ${ref}`);
      return { namespace, name, labels: basePodLabels(name), ip, ports: CONTAINER_PORTS };
    }),
    policies: [],
  };
}

/** A deep copy of a state, so a step can change it without touching the original. */
export function cloneState(s: ClusterState): ClusterState {
  return structuredClone(s);
}

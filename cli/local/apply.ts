/**
 * `sluice local apply -f` and `delete -f`: ordinary Kubernetes YAML or JSON,
 * one or many documents, against the local cluster. Labels are set to exactly
 * the manifest's; a Pod that exists keeps its address and netns and only
 * changes labels (a changed port list is rejected, as Kubernetes rejects it);
 * a Service gets its ClusterIP and NodePorts allocated as the API server would
 * (cli/local/services.ts);
 * objects need their Namespace. Both return once the agent has the change in
 * the datapath.
 */
import fs from 'node:fs';
import YAML from 'yaml';
import { agentRequest } from '../../contract/client.ts';
import type { KubeObject } from '../../agent/datastore/local.ts';
import { datastoreOf, type ClusterConfig } from './cluster.ts';
import { containerPorts, createPodFromManifest, deletePod } from './pods.ts';
import { clusterNodes } from './nodes.ts';
import { parseIpBlock } from '../../policy/address-rules.ts';
import { checkPolicy } from '../../policy/policy-check.ts';
import { errorMessage } from '../../lib/errors.ts';
import { allocateService, checkServiceSpec, holdService, serviceCidrsOf, takenBy, type ServiceTaken } from './services.ts';

const KINDS = ['Namespace', 'Pod', 'NetworkPolicy', 'Service'] as const;
type Kind = (typeof KINDS)[number];
const NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Reads every document of a YAML or JSON file (or '-' for stdin); Lists are flattened. */
export function readManifests(file: string): KubeObject[] {
  const text = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  const docs = YAML.parseAllDocuments(text);
  const out: KubeObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as KubeObject & { items?: KubeObject[] };
    if (value === null || value === undefined) continue;
    if (value.kind === 'List' && Array.isArray(value.items)) out.push(...value.items);
    else out.push(value);
  }
  return out;
}

function check(obj: KubeObject): { kind: Kind; namespace: string; name: string } {
  if (!obj || typeof obj !== 'object' || !obj.metadata || typeof obj.metadata.name !== 'string') {
    throw new Error('every object needs kind and metadata.name');
  }
  if (!(KINDS as readonly string[]).includes(obj.kind)) {
    throw new Error(`kind ${String(obj.kind)} is not supported by the local cluster (it takes ${KINDS.join(', ')})`);
  }
  const name = obj.metadata.name;
  const namespace = obj.kind === 'Namespace' ? '' : (obj.metadata.namespace ?? 'default');
  for (const n of [name, namespace].filter(Boolean)) {
    if (!NAME_RE.test(n) || n.length > 63) throw new Error(`${obj.kind} name '${n}' is not a valid DNS label`);
  }
  const labels = obj.metadata.labels ?? {};
  if (typeof labels !== 'object' || Object.values(labels).some((v) => typeof v !== 'string')) {
    throw new Error(`${obj.kind} ${name}: label values must be strings (quote numbers and booleans)`);
  }
  if (obj.kind === 'NetworkPolicy') checkPolicyBlocks(name, obj.spec);
  if (obj.kind === 'Service') checkServiceSpec(name, obj.spec);
  return { kind: obj.kind as Kind, namespace, name };
}

/** What the API server checks of ipBlocks: a CIDR (host bits are allowed, and masked), excepts too. */
function checkPolicyBlocks(name: string, spec: unknown): void {
  const s = (spec ?? {}) as { ingress?: { from?: { ipBlock?: { cidr: string; except?: string[] } }[] }[]; egress?: { to?: { ipBlock?: { cidr: string; except?: string[] } }[] }[] };
  const peers = [...(s.ingress ?? []).flatMap((r) => r.from ?? []), ...(s.egress ?? []).flatMap((r) => r.to ?? [])];
  for (const peer of peers) {
    if (!peer?.ipBlock) continue;
    try {
      parseIpBlock(peer.ipBlock);
    } catch (err) {
      throw new Error(`NetworkPolicy ${name}: ipBlock: ${errorMessage(err)}`);
    }
  }
}

/** Asks every node's agent to apply the datastore now; resolves once all their maps hold it. */
export async function syncAgent(config: ClusterConfig): Promise<void> {
  await Promise.all(clusterNodes(config).map((node) => agentRequest(node.socket, 'POST', '/v1/datastore/sync')));
}

function samePorts(a: KubeObject, b: KubeObject): boolean {
  const key = (o: KubeObject) => JSON.stringify(containerPorts(o).map((p) => [p.name ?? '', p.containerPort, p.protocol ?? 'TCP']));
  return key(a) === key(b);
}

/** Applies the manifests in order; returns one line per object ("pod x/a created"). */
export async function applyManifests(config: ClusterConfig, objects: KubeObject[]): Promise<string[]> {
  const store = datastoreOf(config);
  const lines: string[] = [];
  // What the stored Services hold, read once for all the Services of this apply.
  let servicesTaken: ServiceTaken | undefined;
  // Every object is checked before any is stored: a bad one leaves nothing behind.
  for (const obj of objects) check(obj);
  for (const obj of objects) {
    const { kind, namespace, name } = check(obj);
    const ref = kind === 'Namespace' ? name : `${namespace}/${name}`;
    if (kind !== 'Namespace' && !store.get('Namespace', namespace)) {
      throw new Error(`${kind} ${ref}: namespace ${namespace} does not exist (apply the Namespace first)`);
    }
    const existing = store.get(kind, name, namespace || undefined);
    const labels = { ...(obj.metadata.labels ?? {}) };
    if (kind === 'Namespace') {
      // Kubernetes sets this label on every namespace, and it cannot be removed.
      labels['kubernetes.io/metadata.name'] = name;
      store.put({ apiVersion: 'v1', kind, metadata: { ...(existing?.metadata ?? {}), name, labels } });
    } else if (kind === 'NetworkPolicy') {
      store.put({ apiVersion: 'networking.k8s.io/v1', kind, metadata: { ...(existing?.metadata ?? {}), name, namespace, labels }, spec: obj.spec ?? {} });
    } else if (kind === 'Service') {
      servicesTaken ??= takenBy(store.list('Service'));
      if (existing) holdService(servicesTaken, existing, false);
      const stored = allocateService({ ...obj, metadata: { ...obj.metadata, name, namespace, labels } }, existing, servicesTaken, serviceCidrsOf(config));
      store.put(stored);
      holdService(servicesTaken, stored, true);
    } else if (existing) {
      if (!samePorts(existing, obj)) {
        throw new Error(`pod ${ref}: container ports cannot be changed on a running pod (delete it and create it again)`);
      }
      store.put({ ...existing, metadata: { ...existing.metadata, labels } });
    } else {
      await createPodFromManifest(config, { ...obj, metadata: { ...obj.metadata, namespace, labels } });
    }
    // Stored all the same (the agent fails it closed), but its author is told here, where they look.
    const problems = kind === 'NetworkPolicy' ? checkPolicy(namespace, name, obj.spec).problems : [];
    const notCompiled = problems.length > 0 ? `; NOT COMPILED: ${problems.join('; ')} (the pods it selects fail closed)` : '';
    lines.push(`${kind.toLowerCase()} ${ref} ${existing ? 'configured' : 'created'}${notCompiled}`);
  }
  await syncAgent(config);
  return lines;
}

/** Deletes the objects named by the manifests; a missing one is an error unless ignoreNotFound. */
export async function deleteManifests(config: ClusterConfig, objects: KubeObject[], ignoreNotFound: boolean): Promise<string[]> {
  const store = datastoreOf(config);
  const lines: string[] = [];
  for (const obj of objects) {
    const { kind, namespace, name } = check(obj);
    const ref = kind === 'Namespace' ? name : `${namespace}/${name}`;
    if (!store.get(kind, name, namespace || undefined)) {
      if (ignoreNotFound) continue;
      throw new Error(`${kind} ${ref} not found`);
    }
    if (kind === 'Pod') {
      await deletePod(config, ref);
    } else if (kind === 'Namespace') {
      // As in Kubernetes, a namespace takes its objects with it.
      for (const pod of store.list('Pod').filter((p) => p.metadata.namespace === name)) await deletePod(config, `${name}/${pod.metadata.name}`);
      for (const np of store.list('NetworkPolicy').filter((p) => p.metadata.namespace === name)) store.delete('NetworkPolicy', np.metadata.name, name);
      for (const svc of store.list('Service').filter((p) => p.metadata.namespace === name)) store.delete('Service', svc.metadata.name, name);
      store.delete('Namespace', name);
    } else {
      store.delete(kind, name, namespace);
    }
    lines.push(`${kind.toLowerCase()} ${ref} deleted`);
  }
  await syncAgent(config);
  return lines;
}

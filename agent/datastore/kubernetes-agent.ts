/**
 * The agent's Kubernetes mode around the datastore: wait for the initial
 * lists and this node's pod CIDRs before anything is synced or served, write
 * the CNI conflist once the agent serves (so the node turns Ready only then),
 * and on SIGTERM remove it only when Sluice is being uninstalled (its
 * DaemonSet or namespace is going away), never on a restart or an upgrade.
 */
import { podCIDRsOfNode } from '../../ipam/pod-cidrs.ts';
import { readConflistTemplate, removeConflist, writeConflist } from '../../install/cni-conf.ts';
import { ApiStatusError } from './kubernetes-client.ts';
import { KubernetesDatastore } from './kubernetes.ts';
import { PolicyEvents } from './kubernetes-policy-events.ts';
import { errorMessage } from '../../lib/errors.ts';

const PROGRESS_LOG_INTERVAL_MS = 10_000;
const UNINSTALL_CHECK_TIMEOUT_MS = 3_000;

/** The agent's flags for Kubernetes mode. */
export interface KubernetesModeOptions {
  kubeconfig?: string;
  nodeName: string;
  /** --pod-cidr flags: used only when the Node has no pod CIDRs. */
  podCIDRFlags?: string[];
  /** --cni-conf: the conflist to write when ready and remove on uninstall. */
  cniConf?: string;
  cniConfTemplate?: string;
  /** --daemonset NAMESPACE/NAME: the agent's own DaemonSet, for the uninstall check. */
  daemonSet?: string;
  log: (msg: string) => void;
}

/** The datastore, synced, with this node's pod CIDRs. */
export interface KubernetesMode {
  datastore: KubernetesDatastore;
  podCIDRs: string[];
  /** Events on the NetworkPolicies that cannot be compiled: call its report() after every sync. */
  policyEvents: PolicyEvents;
  /** Call once the API serves: writes the conflist. */
  serving(): void;
  /** Call on SIGTERM: stops the watches; removes the conflist when uninstalling. */
  stop(): Promise<void>;
}

function waitFor<T>(ds: KubernetesDatastore, get: () => T | undefined): Promise<T> {
  return new Promise((resolve) => {
    const check = () => {
      const v = get();
      if (v === undefined) return false;
      resolve(v);
      return true;
    };
    if (check()) return;
    ds.onChange(() => void check());
  });
}

/** Starts the datastore and waits for its lists and the node's pod CIDRs. */
export async function startKubernetesMode(opts: KubernetesModeOptions): Promise<KubernetesMode> {
  const ds = KubernetesDatastore.fromKubeconfig(opts.kubeconfig, { log: opts.log });
  ds.start();
  const started = Date.now();
  const progress = setInterval(() => opts.log(`waiting for ${ds.describe()}: ${Math.round((Date.now() - started) / 1000)} s`), PROGRESS_LOG_INTERVAL_MS);
  progress.unref();
  try {
    await ds.whenReady();
    opts.log(`datastore ${ds.describe()} synced in ${Date.now() - started} ms`);
    const podCIDRs = await waitFor(ds, () => {
      const fromNode = podCIDRsOfNode(ds.node(opts.nodeName));
      if (fromNode.length > 0) return fromNode;
      if (opts.podCIDRFlags && opts.podCIDRFlags.length > 0) return opts.podCIDRFlags;
      return undefined;
    });
    const policyEvents = new PolicyEvents({ client: ds.client, node: opts.nodeName, log: opts.log });
    return {
      datastore: ds,
      podCIDRs,
      policyEvents,
      serving: () => {
        if (!opts.cniConf) return;
        const wrote = writeConflist(opts.cniConf, readConflistTemplate(opts.cniConfTemplate));
        opts.log(`CNI config ${opts.cniConf} ${wrote ? 'written' : 'already in place'}`);
      },
      stop: async () => {
        policyEvents.stop();
        if (opts.cniConf && (await uninstalling(ds, opts))) {
          removeConflist(opts.cniConf);
          opts.log(`Sluice is being uninstalled: removed ${opts.cniConf}, the node's network is not ready any more`);
        }
        ds.stop();
      },
    };
  } finally {
    clearInterval(progress);
  }
}

/**
 * True when the agent stops because Sluice is being removed: its namespace is
 * terminating or gone, or its DaemonSet is deleted or being deleted. Any doubt
 * (API unreachable, no --daemonset) keeps the conflist: a restart must never
 * leave pods unable to start.
 */
export async function uninstalling(ds: KubernetesDatastore, opts: Pick<KubernetesModeOptions, 'daemonSet' | 'log'>): Promise<boolean> {
  if (!opts.daemonSet) return false;
  const [namespace, name] = opts.daemonSet.split('/');
  if (!namespace || !name) return false;
  const ns = ds.namespace(namespace) as { metadata: { deletionTimestamp?: string } } | undefined;
  if (ds.ready() && (!ns || ns.metadata.deletionTimestamp)) return true;
  try {
    const set = await ds.client.getJson<{ metadata?: { deletionTimestamp?: string } }>(
      `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/daemonsets/${encodeURIComponent(name)}`,
      {},
      UNINSTALL_CHECK_TIMEOUT_MS,
    );
    return Boolean(set.metadata?.deletionTimestamp);
  } catch (err: unknown) {
    if (err instanceof ApiStatusError && err.statusCode === 404) return true;
    opts.log(`uninstall check: ${errorMessage(err)}; keeping the CNI config`);
    return false;
  }
}

/**
 * Which pod a network namespace inode belongs to, from the endpoint list
 * (as agent/tcp-health.ts does): an endpoint's netns path is stat'ed once,
 * when it first appears, and forgotten when it goes.
 */
import { statSync } from 'node:fs';
import type { Endpoint } from '../../contract/api-types.ts';
import { errorMessage } from '../../lib/errors.ts';

/** A pod as the index knows it. */
export interface IndexedPod {
  namespace: string;
  name: string;
  containerId: string;
  inode: number;
}

/** The inode of a network namespace path (nsfs: the inode number is the namespace's ns.inum). */
export function netnsInodeOf(path: string): number {
  return statSync(path).ino;
}

/** Netns inode → pod, following the endpoint list. */
export class PodIndex {
  private readonly byEndpoint = new Map<number, IndexedPod | null>();
  private byInode = new Map<number, IndexedPod>();
  private readonly inodeOf: (path: string) => number;
  private readonly log: (message: string) => void;

  constructor(opts: { inodeOf?: (path: string) => number; log: (message: string) => void }) {
    this.inodeOf = opts.inodeOf ?? netnsInodeOf;
    this.log = opts.log;
  }

  /** Follows the endpoints now registered; returns true when the set of pods changed. */
  track(endpoints: readonly Pick<Endpoint, 'id' | 'namespace' | 'pod' | 'netns' | 'containerID'>[]): boolean {
    let changed = false;
    const live = new Set<number>();
    for (const ep of endpoints) {
      live.add(ep.id);
      if (this.byEndpoint.has(ep.id)) continue;
      let pod: IndexedPod | null = null;
      try {
        pod = { namespace: ep.namespace, name: ep.pod, containerId: ep.containerID, inode: this.inodeOf(ep.netns) };
      } catch (err: unknown) {
        this.log(`security: netns of ${ep.namespace}/${ep.pod} (${ep.netns}) unreadable, its events stay unattributed: ${errorMessage(err)}`);
      }
      this.byEndpoint.set(ep.id, pod);
      changed = true;
    }
    for (const id of this.byEndpoint.keys()) {
      if (live.has(id)) continue;
      this.byEndpoint.delete(id);
      changed = true;
    }
    if (changed) {
      this.byInode = new Map();
      for (const pod of this.byEndpoint.values()) if (pod) this.byInode.set(pod.inode, pod);
    }
    return changed;
  }

  /** The pod whose netns has this inode, if any. */
  pod(inode: number): IndexedPod | undefined {
    return this.byInode.get(inode);
  }

  /** The inode of a pod's netns, if the pod is known. */
  inodeOfPod(namespace: string, name: string): number | undefined {
    for (const pod of this.byInode.values()) if (pod.namespace === namespace && pod.name === name) return pod.inode;
    return undefined;
  }
}

/**
 * Which Services a datastore event touched, and one Service's inputs looked
 * up without a pass over the others: the index the incremental service sync
 * reads (agent/services/start.ts). The Kubernetes datastore feeds it every
 * Service, Endpoints and EndpointSlice change as it applies it. Pure.
 *
 * An EndpointSlice belongs to the Service its kubernetes.io/service-name
 * label names; a slice whose label changed touches its old and its new
 * Service.
 */
import type { KubeObject } from '../datastore/local.ts';
import { sliceOwner, type ServiceEndpointInputs } from './table.ts';

/** The collections the index reads objects from ("namespace/name" → object). */
export interface ServiceCollections {
  services: ReadonlyMap<string, KubeObject>;
  endpoints: ReadonlyMap<string, KubeObject>;
  endpointSlices: ReadonlyMap<string, KubeObject>;
}

/** Service keys touched since the last take(), and the slices of each Service. */
export class ServiceChangeIndex {
  private readonly collections: ServiceCollections;
  private readonly touched = new Set<string>();
  /** Service key → keys of the EndpointSlices that name it. */
  private readonly slicesOf = new Map<string, Set<string>>();

  constructor(collections: ServiceCollections) {
    this.collections = collections;
  }

  /** A Service or its Endpoints (same namespace and name) was added, changed or deleted. */
  serviceChanged(key: string): void {
    this.touched.add(key);
  }

  /** An EndpointSlice changed: before and after are its objects (undefined: absent). */
  sliceChanged(sliceKey: string, before: KubeObject | undefined, after: KubeObject | undefined): void {
    const was = before && sliceOwner(before);
    const is = after && sliceOwner(after);
    if (was) {
      this.touched.add(was);
      const set = this.slicesOf.get(was);
      set?.delete(sliceKey);
      if (set?.size === 0) this.slicesOf.delete(was);
    }
    if (is) {
      this.touched.add(is);
      const set = this.slicesOf.get(is);
      if (set) set.add(sliceKey);
      else this.slicesOf.set(is, new Set([sliceKey]));
    }
  }

  /** The Service keys touched since the last call (then forgotten). */
  take(): string[] {
    const keys = [...this.touched];
    this.touched.clear();
    return keys;
  }

  /** One Service (undefined: it does not exist) and its endpoint inputs. */
  inputsFor(key: string): { service: KubeObject | undefined; inputs: ServiceEndpointInputs } {
    const slices = [...(this.slicesOf.get(key) ?? [])]
      .sort()
      .map((k) => this.collections.endpointSlices.get(k))
      .filter((s): s is KubeObject => s !== undefined);
    return { service: this.collections.services.get(key), inputs: { endpointSlices: slices, endpoints: this.collections.endpoints.get(key) } };
  }

  /** Every Service key (for a full rebuild). */
  serviceKeys(): string[] {
    return [...this.collections.services.keys()];
  }
}

/**
 * The load balancer's desired frontends, kept per Service, so that a
 * datastore event that touches one Service rebuilds that Service's frontends
 * and hands the sync only the frontend keys that could have changed (the
 * incremental sync's input; the cost of a change is the Services it touches,
 * not the cluster). Pure.
 *
 * Two Services may claim one frontend key (a NodePort copy on a node address
 * equal to another Service's ClusterIP, or a hand-written local Service with
 * a duplicate address): a Service's own address wins over a NodePort copy,
 * then the smallest "namespace/name". The same rule whatever order the
 * Services arrived in, so an incremental state equals a full rebuild.
 */
import { compareFrontends, frontendKeyOf, nodePortCopies, type ServiceFrontend } from './table.ts';

interface Claim {
  service: string;
  frontend: ServiceFrontend;
  /** A NodePort copy on a node address (loses to any Service's own address). */
  copy: boolean;
}

/** Per-Service frontends and, per frontend key, the Services that claim it. */
export class DesiredFrontends {
  private readonly byService = new Map<string, Claim[]>();
  private readonly claims = new Map<string, Claim[]>();
  private sorted: ServiceFrontend[] | null = null;

  /**
   * Sets one Service's frontends ([] when it went away), with its NodePort
   * copies on the node addresses; returns the frontend keys whose winner may
   * have changed (the keys it claimed before and claims now).
   */
  setService(service: string, frontends: ServiceFrontend[], nodeAddresses: string[]): Set<string> {
    const touched = new Set<string>();
    for (const old of this.byService.get(service) ?? []) {
      const key = frontendKeyOf(old.frontend);
      touched.add(key);
      const rest = this.claims.get(key)!.filter((c) => c !== old);
      if (rest.length > 0) this.claims.set(key, rest);
      else this.claims.delete(key);
    }
    const own = new Set(frontends.map(frontendKeyOf));
    const mine: Claim[] = [
      ...frontends.map((frontend) => ({ service, frontend, copy: false })),
      ...nodePortCopies(frontends, nodeAddresses, own).map((frontend) => ({ service, frontend, copy: true })),
    ];
    for (const claim of mine) {
      const key = frontendKeyOf(claim.frontend);
      touched.add(key);
      const list = this.claims.get(key);
      if (list) list.push(claim);
      else this.claims.set(key, [claim]);
    }
    if (mine.length > 0) this.byService.set(service, mine);
    else this.byService.delete(service);
    if (touched.size > 0) this.sorted = null;
    return touched;
  }

  /** The frontend a key resolves to, or undefined when no Service claims it. */
  frontend(key: string): ServiceFrontend | undefined {
    const list = this.claims.get(key);
    if (!list) return undefined;
    let best = list[0]!;
    for (const c of list) if (c.copy !== best.copy ? !c.copy : c.service < best.service) best = c;
    return best.frontend;
  }

  /** The Services that have frontends. */
  services(): IterableIterator<string> {
    return this.byService.keys();
  }

  /** Every frontend key any Service claims. */
  keys(): IterableIterator<string> {
    return this.claims.keys();
  }

  /** Every winning frontend, sorted by address, port, protocol (built again only after a change). */
  table(): ServiceFrontend[] {
    this.sorted ??= [...this.claims.keys()].map((k) => this.frontend(k)!).sort(compareFrontends);
    return this.sorted;
  }
}

/**
 * Keeps this node's routes to other nodes' pods equal to the plan the Node
 * objects call for (agent/routing/plan.ts): adds what is missing, replaces
 * what changed, removes the routes of nodes that went away. Routes carry
 * Sluice's own route protocol number, so the agent finds its routes again
 * after a restart and never touches anyone else's. In VXLAN mode it also owns
 * the VXLAN device, its forwarding entries and the next hops' neighbours.
 * Everything stays in place when the agent stops: traffic between nodes keeps
 * flowing while it restarts.
 */
import { addNeighbor, addRoute, deleteNeighbor, deleteRoute, deleteLink, linkByIndex, linkByName, listAddresses, listRoutes, openRtnl, setLinkUp, type RouteSpec, type Rtnl } from '../../datapath/netlink.ts';
import type { ClusterNode } from '../datastore/cluster-view.ts';
import { planRoutes, type NodeRoute, type RoutingMode, type RoutingPlan } from './plan.ts';
import { addFdbEntry, createVxlanDevice, deleteFdbEntry, VXLAN_DEVICE, VXLAN_OVERHEAD_BYTES } from './vxlan.ts';
import { errorMessage } from '../../lib/errors.ts';

/** Route protocol number (rtm_protocol) of the routes Sluice owns: `ip route show proto 83`. */
export const RTPROT_SLUICE = 83;
/** How often the Node objects are compared with the last plan put in place. */
export const ROUTING_CHECK_INTERVAL_MS = 500;
/** How often the kernel is compared with the plan even when the Node objects did not change. */
export const ROUTING_RESYNC_INTERVAL_MS = 30_000;

/** What the routing needs from the rest of the agent. */
export interface NodeRoutingOptions {
  nodeName: string;
  mode: RoutingMode;
  /** The cluster's nodes as the datastore has them now. */
  nodes: () => ClusterNode[];
  log: (message: string) => void;
}

/** What one reconciliation changed. */
export interface RoutingChanges {
  added: string[];
  removed: string[];
  failed: string[];
}

/** This node's routes to the pods of other nodes. */
export class NodeRouting {
  private readonly opts: NodeRoutingOptions;
  private lastPlan = '';
  private lastFullMs = 0;
  private mtu: number | undefined;
  private vxlanIndex = 0;
  /** Forwarding entries and neighbours put on the VXLAN device, by VTEP MAC and next hop. */
  private readonly vteps = new Map<string, { gateways: Set<string> }>();
  private timer: NodeJS.Timeout | null = null;
  private lastFailures = '';
  private running: Promise<unknown> = Promise.resolve();

  constructor(opts: NodeRoutingOptions) {
    this.opts = opts;
  }

  /** The MTU pods must use (VXLAN: the overlay device's), or undefined when the CNI's default is right. */
  podMtu(): number | undefined {
    return this.mtu;
  }

  /** Puts the current plan in place; resolves with what changed (nothing when the plan is the last one, unless forced). */
  reconcile(force = false): Promise<RoutingChanges> {
    const next = this.running.then(() => this.reconcileNow(force));
    this.running = next.catch(() => undefined);
    return next;
  }

  /** Reconciles now and then whenever the Node objects change. */
  start(): void {
    this.timer = setInterval(() => {
      this.reconcile().then(
        (c) => this.logChanges(c),
        (err: unknown) => this.opts.log(`node routes: ${errorMessage(err)}`),
      );
    }, ROUTING_CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  /** Stops watching; routes, device and entries stay. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Logs what a reconciliation changed, if anything; a failure that repeats is logged once. */
  logChanges(c: RoutingChanges): void {
    if (c.added.length) this.opts.log(`node routes added: ${c.added.join('; ')}`);
    if (c.removed.length) this.opts.log(`node routes removed: ${c.removed.join('; ')}`);
    const failures = c.failed.join('; ');
    if (failures && failures !== this.lastFailures) this.opts.log(`node routes failed (retried every ${ROUTING_CHECK_INTERVAL_MS} ms): ${failures}`);
    this.lastFailures = failures;
  }

  private async reconcileNow(force: boolean): Promise<RoutingChanges> {
    const changes: RoutingChanges = { added: [], removed: [], failed: [] };
    const plan = planRoutes(this.opts.nodes(), this.opts.nodeName, this.opts.mode);
    const key = JSON.stringify(plan);
    const now = Date.now();
    if (!force && key === this.lastPlan && now - this.lastFullMs < ROUTING_RESYNC_INTERVAL_MS) return changes;
    if (key !== this.lastPlan) for (const s of plan.skipped) this.opts.log(`node routes: cannot route ${s}`);
    // Until this pass completes without a failure, the next check tries again.
    this.lastPlan = '';
    const rtnl = openRtnl();
    try {
      await this.ensureDevice(rtnl, plan, changes);
      const owned = (await listRoutes(rtnl)).filter((r) => r.protocol === RTPROT_SLUICE);
      const wanted = new Set(plan.routes.map((r) => r.dst));
      for (const route of plan.routes) {
        const have = owned.find((r) => r.dst === route.dst);
        const index = route.vtep ? this.vxlanIndex : undefined;
        try {
          // Forwarding entry and neighbour are replaced on every pass (cheap, and restores what someone flushed).
          if (route.vtep) await this.installVtep(rtnl, route.vtep.mac, route.vtep.remote, route.gateway);
          if (have && have.gateway === route.gateway && (index === undefined || have.index === index)) continue;
          await this.install(rtnl, route);
          changes.added.push(`${route.dst} via ${route.gateway} (${route.node})`);
        } catch (err: unknown) {
          changes.failed.push(`${route.dst} (${route.node}): ${errorMessage(err)}`);
        }
      }
      for (const r of owned) {
        if (wanted.has(r.dst)) continue;
        await deleteRoute(rtnl, { dst: r.dst, table: r.table, ...(r.metric === undefined ? {} : { metric: r.metric }) });
        changes.removed.push(`${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}`);
      }
      await this.pruneVteps(rtnl, plan);
    } finally {
      rtnl.close();
    }
    if (changes.failed.length === 0) this.lastPlan = key;
    this.lastFullMs = now;
    return changes;
  }

  /** VXLAN mode: the device exists and is up (its MTU is the pods'); native mode: no device. */
  private async ensureDevice(rtnl: Rtnl, plan: RoutingPlan, changes: RoutingChanges): Promise<void> {
    const existing = await linkByName(rtnl, VXLAN_DEVICE);
    if (plan.mode === 'native') {
      if (existing) {
        await deleteLink(rtnl, existing.index);
        changes.removed.push(`device ${VXLAN_DEVICE}`);
      }
      this.vxlanIndex = 0;
      this.mtu = undefined;
      return;
    }
    // Without an address of its own the node cannot tunnel; the plan has said so (skipped) and routes nothing.
    if (!plan.localAddress) return;
    let link = existing;
    if (!link) {
      const local = plan.localAddress;
      const underlayIndex = (await listAddresses(rtnl)).find((a) => a.address === local)?.index;
      const underlay = underlayIndex === undefined ? null : await linkByIndex(rtnl, underlayIndex);
      if (!underlay) {
        changes.failed.push(`${VXLAN_DEVICE}: no interface holds this node's InternalIP ${local}`);
        return;
      }
      await createVxlanDevice(rtnl, { local, underlayIndex: underlay.index, mtu: underlay.mtu - VXLAN_OVERHEAD_BYTES });
      link = await linkByName(rtnl, VXLAN_DEVICE);
      if (!link) throw new Error(`${VXLAN_DEVICE} vanished right after it was created`);
      changes.added.push(`device ${VXLAN_DEVICE} (local ${local}, mtu ${link.mtu})`);
    }
    if (!link.up) await setLinkUp(rtnl, link.index);
    this.vxlanIndex = link.index;
    this.mtu = link.mtu;
  }

  private async install(rtnl: Rtnl, route: NodeRoute): Promise<void> {
    // Our protocol number, so that we recognise the route as ours later.
    const spec: RouteSpec = { dst: route.dst, gateway: route.gateway, protocol: RTPROT_SLUICE };
    if (route.vtep) Object.assign(spec, { index: this.vxlanIndex, onlink: true, dev: VXLAN_DEVICE });
    await addRoute(rtnl, spec);
  }

  /** The remote VTEP's MAC goes to its node's underlay address; the next hop resolves to that MAC. */
  private async installVtep(rtnl: Rtnl, mac: string, remote: string, gateway: string): Promise<void> {
    await addFdbEntry(rtnl, this.vxlanIndex, mac, remote);
    await addNeighbor(rtnl, { index: this.vxlanIndex, ip: gateway, mac, dev: VXLAN_DEVICE });
    const entry = this.vteps.get(mac) ?? { gateways: new Set<string>() };
    entry.gateways.add(gateway);
    this.vteps.set(mac, entry);
  }

  /** Forwarding entries and neighbours of nodes no longer in the plan (those this agent put there). */
  private async pruneVteps(rtnl: Rtnl, plan: RoutingPlan): Promise<void> {
    const wanted = new Map(plan.routes.filter((r) => r.vtep).map((r) => [r.gateway, r.vtep!.mac]));
    for (const [mac, entry] of this.vteps) {
      for (const gw of entry.gateways) {
        if (wanted.get(gw) === mac) continue;
        if (this.vxlanIndex) await deleteNeighbor(rtnl, { index: this.vxlanIndex, ip: gw, mac, dev: VXLAN_DEVICE });
        entry.gateways.delete(gw);
      }
      if (entry.gateways.size === 0 && ![...wanted.values()].includes(mac)) {
        if (this.vxlanIndex) await deleteFdbEntry(rtnl, this.vxlanIndex, mac);
        this.vteps.delete(mac);
      }
    }
  }
}


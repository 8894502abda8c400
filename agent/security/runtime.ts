/**
 * Runtime security in the agent (issue 19): the sensor's events go through
 * the rule engine; alerts and events are kept in a bounded ring for `sluice
 * security events` and counted in the metrics; kill and deny-connect rules
 * become the sensor's kernel maps for the local pods they select, rewritten
 * when pods come and go or the rules change. Rule files are watched and
 * reloaded; a file that does not parse keeps the other rules working and
 * says where it failed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Counter, type Registry } from 'prom-client';
import type { Endpoint } from '../../contract/api-types.ts';
import type { SecurityAlert, SecurityEvent } from '../../contract/security.ts';
import { errorMessage } from '../../lib/errors.ts';
import { defaultRulesSource, loadRuleSources, readRuleFiles, RuleEngine, type RuleLoadError } from '../../security/rules/index.ts';
import type { DenyConnectEntry, KillEntry } from './enforcement.ts';
import type { SecuritySensor, SecuritySensorStats } from './sensor.ts';

/** Items the ring keeps for `sluice security events --last`. */
const RING = 4096;
/** How long after a rule file changes it is read again (editors write in several steps). */
const RELOAD_DEBOUNCE_MS = 300;

/** One item of the stream: an event, or an alert a rule raised on one. */
export type SecurityItem = { kind: 'event'; event: SecurityEvent } | { kind: 'alert'; alert: SecurityAlert };

/** Filters of GET /v1/security/events. */
export interface SecurityFilter {
  /** "ns/name" or "name". */
  pod?: string;
  rule?: string;
  /** Only alerts. */
  alerts?: boolean;
}

/** What `sluice status` says of runtime security. */
export interface SecurityStatus {
  enabled: boolean;
  reason?: string;
  ruleFiles: string[];
  rules: number;
  errors: string[];
  kill: number;
  denyConnect: number;
  stats?: SecuritySensorStats;
}

export interface SecurityRuntimeOptions {
  sensor: SecuritySensor;
  ruleFiles: string[];
  labels: (namespace: string, pod: string) => Record<string, string>;
  log: (msg: string) => void;
  registry?: Registry;
  hostname?: string;
}

function podOf(item: SecurityItem): SecurityEvent['pod'] {
  return item.kind === 'event' ? item.event.pod : item.alert.event.pod;
}

/** True when the item passes the filter. */
export function securityMatches(item: SecurityItem, f: SecurityFilter): boolean {
  if (f.alerts && item.kind !== 'alert') return false;
  if (f.rule && (item.kind !== 'alert' || item.alert.rule !== f.rule)) return false;
  if (f.pod) {
    const pod = podOf(item);
    if (!pod) return false;
    if (f.pod.includes('/') ? `${pod.namespace}/${pod.name}` !== f.pod : pod.name !== f.pod) return false;
  }
  return true;
}

/** The rule engine on the sensor's events, with the kernel's share of the rules. */
export class SecurityRuntime {
  private readonly o: SecurityRuntimeOptions;
  private engine: RuleEngine;
  private errors: RuleLoadError[] = [];
  private endpoints: readonly Endpoint[] = [];
  private readonly ring: SecurityItem[] = [];
  private readonly followers = new Set<{ filter: SecurityFilter; send: (i: SecurityItem) => boolean }>();
  private readonly alertListeners: ((a: SecurityAlert) => void)[] = [];
  private readonly watchers: fs.FSWatcher[] = [];
  private reloadTimer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private plan = { kill: 0, denyConnect: 0 };
  /** The entries last handed to the sensor: an endpoint sync that changes none of them writes nothing again. */
  private written = '';
  private readonly events?: Counter;
  private readonly alerts?: Counter;
  followerLosses = 0;

  constructor(options: SecurityRuntimeOptions) {
    this.o = options;
    this.engine = this.load();
    if (options.registry) {
      const registers = [options.registry];
      this.events = new Counter({ name: 'sluice_security_events_total', help: 'Runtime security events the sensor delivered, by type.', labelNames: ['type'], registers });
      this.alerts = new Counter({ name: 'sluice_security_alerts_total', help: 'Alerts the security rules raised, by rule and priority.', labelNames: ['rule', 'priority'], registers });
      const sensor = options.sensor;
      new Counter({
        name: 'sluice_security_events_lost_total',
        help: 'Runtime security events the kernel could not send (over a budget, the ring buffer full, or a setuid not followed).',
        registers,
        collect() {
          this.reset();
          this.inc(sensor.stats().lost.total);
        },
      });
      new Counter({
        name: 'sluice_security_pod_events_lost_total',
        help: 'Runtime security events lost, by the pod whose they were (pod "" and host "true" for the host, both "" for a namespace that is no pod), kind (process, files) and reason (budget: over its own budget; ringbuf: the ring buffer full).',
        labelNames: ['namespace', 'pod', 'host', 'kind', 'reason'],
        registers,
        collect() {
          this.reset();
          for (const l of sensor.stats().lostByPod) {
            const labels = { namespace: l.namespace ?? '', pod: l.pod ?? '', host: String(l.host), kind: l.kind };
            if (l.budget > 0) this.inc({ ...labels, reason: 'budget' }, l.budget);
            if (l.ringbuf > 0) this.inc({ ...labels, reason: 'ringbuf' }, l.ringbuf);
          }
        },
      });
    }
  }

  /** Subscribes to the sensor and watches the rule files. */
  start(): void {
    this.unsubscribe = this.o.sensor.subscribe((e) => this.onEvent(e));
    this.applyEnforcement();
    for (const file of this.o.ruleFiles) {
      try {
        this.watchers.push(fs.watch(file, () => this.scheduleReload()));
      } catch (err: unknown) {
        this.o.log(`security rules: cannot watch ${file}: ${errorMessage(err)}`);
      }
    }
  }

  stop(): void {
    this.unsubscribe?.();
    for (const w of this.watchers) w.close();
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
  }

  /** Follows the local pods (every endpoint sync): the kernel's share of the rules is per pod. */
  track(endpoints: readonly Endpoint[]): void {
    this.endpoints = endpoints;
    this.o.sensor.track(endpoints);
    this.applyEnforcement();
  }

  /** Reads the rule files again; the previous rules stay when none loads. */
  reload(): void {
    this.engine = this.load();
    this.written = ''; // a reload writes the kernel's actions again, whatever they were
    this.applyEnforcement();
  }

  /** Calls listener with every alert (the flow records show them too). */
  onAlert(listener: (a: SecurityAlert) => void): void {
    this.alertListeners.push(listener);
  }

  latest(filter: SecurityFilter, last: number): SecurityItem[] {
    const out: SecurityItem[] = [];
    for (let i = this.ring.length - 1; i >= 0 && out.length < last; i--) if (securityMatches(this.ring[i]!, filter)) out.push(this.ring[i]!);
    return out.reverse();
  }

  follow(filter: SecurityFilter, send: (i: SecurityItem) => boolean): () => void {
    const f = { filter, send };
    this.followers.add(f);
    return () => this.followers.delete(f);
  }

  status(): SecurityStatus {
    return {
      enabled: true,
      ruleFiles: this.o.ruleFiles,
      rules: this.engine.rules.length,
      errors: this.errors.map((e) => e.text),
      kill: this.plan.kill,
      denyConnect: this.plan.denyConnect,
      stats: this.o.sensor.stats(),
    };
  }

  private load(): RuleEngine {
    const read = readRuleFiles(this.o.ruleFiles);
    const loaded = loadRuleSources([defaultRulesSource(), ...read.sources]);
    this.errors = [...read.errors, ...loaded.errors];
    for (const e of this.errors) this.o.log(`security rules: ${e.text}`);
    this.o.log(`security rules: ${loaded.rules.length} loaded from the defaults${this.o.ruleFiles.length ? ` and ${this.o.ruleFiles.join(', ')}` : ''}${this.errors.length ? `, ${this.errors.length} skipped` : ''}`);
    return new RuleEngine(loaded.rules, { hostname: this.o.hostname ?? os.hostname() });
  }

  private scheduleReload(): void {
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      try {
        this.reload();
      } catch (err: unknown) {
        this.o.log(`security rules: reload failed, the previous rules stay: ${errorMessage(err)}`);
      }
    }, RELOAD_DEBOUNCE_MS);
    this.reloadTimer.unref();
  }

  /** The kill and deny-connect entries for the local pods each rule selects. */
  private applyEnforcement(): void {
    const plan = this.engine.enforcement();
    const kill: KillEntry[] = [];
    const deny: DenyConnectEntry[] = [];
    const pods = new Map(this.endpoints.map((e) => [`${e.namespace}/${e.pod}`, { namespace: e.namespace, name: e.pod }]));
    plan.kill.forEach((rule, index) => {
      // The kernel matches the executed file's name: a path rule is held to its file name there, and to its path in the alert.
      const binaries = new Set([...rule.binaries.names, ...rule.binaries.paths.map((p) => path.basename(p))]);
      for (const pod of pods.values()) {
        if (!rule.pods(this.o.labels(pod.namespace, pod.name), pod.namespace, pod.name)) continue;
        for (const binary of binaries) kill.push({ pod, binary, rule: index });
      }
    });
    plan.denyConnect.forEach((rule, index) => {
      for (const pod of pods.values()) {
        if (!rule.pods(this.o.labels(pod.namespace, pod.name), pod.namespace, pod.name)) continue;
        deny.push(rule.allowedPorts ? { pod, mode: 'allow-only', ports: rule.allowedPorts, rule: index } : { pod, mode: 'deny', ports: rule.deniedPorts!, rule: index });
      }
    });
    // Every endpoint sync (each CNI ADD and DEL) comes here; the sensor's track() has already
    // rewritten its maps for pods that came or went, so only changed entries are written again.
    const entries = JSON.stringify([kill, deny]);
    if (entries === this.written) return;
    try {
      this.o.sensor.setKill(kill);
      this.o.sensor.setDenyConnect(deny);
      this.written = entries;
      this.plan = { kill: kill.length, denyConnect: deny.length };
    } catch (err: unknown) {
      this.o.log(`security rules: cannot write the kernel's actions: ${errorMessage(err)}`);
    }
  }

  private onEvent(event: SecurityEvent): void {
    this.events?.inc({ type: event.type });
    this.keep({ kind: 'event', event });
    for (const alert of this.engine.evaluate(event)) {
      this.alerts?.inc({ rule: alert.rule, priority: alert.priority });
      this.keep({ kind: 'alert', alert });
      for (const listener of this.alertListeners) listener(alert);
    }
  }

  private keep(item: SecurityItem): void {
    this.ring.push(item);
    if (this.ring.length > RING) this.ring.splice(0, this.ring.length - RING);
    for (const f of this.followers) if (securityMatches(item, f.filter) && !f.send(item)) this.followerLosses++;
  }
}

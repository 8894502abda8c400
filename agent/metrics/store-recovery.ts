/**
 * sluice_state_store_damaged_total{store}: state stores (ipam, endpoints,
 * numbering) found damaged at start and rebuilt from the node. Counted once
 * per start that found one, so an alert on increase() sees every time it
 * happened; the damaged file is kept beside the store (sluice status names it).
 */
import { Counter, type Registry } from 'prom-client';
import type { StoreRecovery } from '../store-check.ts';
import { METRIC_PREFIX } from './metrics.ts';

/** Registers the counter and counts the recoveries of this start. */
export function registerStoreRecoveryMetrics(registry: Registry, recoveries: readonly StoreRecovery[]): void {
  const damaged = new Counter({
    name: `${METRIC_PREFIX}state_store_damaged_total`,
    help: 'State stores (ipam, endpoints, numbering) found damaged at start, moved aside and rebuilt from the node.',
    labelNames: ['store'],
    registers: [registry],
  });
  for (const store of ['ipam', 'endpoints', 'numbering']) damaged.inc({ store }, 0);
  for (const r of recoveries) damaged.inc({ store: r.store });
}

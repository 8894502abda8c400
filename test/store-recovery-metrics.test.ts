/** sluice_state_store_damaged_total counts the stores a start found damaged, by store, and shows 0 for the others. */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerStoreRecoveryMetrics } from '../agent/metrics/store-recovery.ts';

describe('the store recovery metric', () => {
  it('counts each damaged store of this start', async () => {
    const registry = new Registry();
    const at = new Date(0).toISOString();
    registerStoreRecoveryMetrics(registry, [{ store: 'endpoints', file: '/s/endpoints.db', damage: 'zero-length file', movedTo: '/s/endpoints.db.damaged-x', rebuilt: '2 endpoint(s)', at }]);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE sluice_state_store_damaged_total counter');
    expect(text).toContain('sluice_state_store_damaged_total{store="endpoints"} 1');
    expect(text).toContain('sluice_state_store_damaged_total{store="numbering"} 0');
    expect(text).toContain('sluice_state_store_damaged_total{store="ipam"} 0');
  });
});

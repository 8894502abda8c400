/**
 * `sluice local up` right after the agent got SIGTERM: the departing agent
 * still exists for a moment, and `up` once took it for the running one,
 * reported its PID and started nothing, so once it had exited no agent ran
 * and every pod create failed. `up` must wait for it to go and start another.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, SLUICE, TestCluster } from './support/local-cluster.ts';

describe('local up while the agent is stopping', () => {
  const cluster = new TestCluster();
  beforeAll(() => cluster.up(), 120_000);
  afterAll(() => cluster.teardown());

  it('starts a new agent once the old one has exited, and pods are created again', async () => {
    for (let round = 0; round < 3; round++) {
      const old = cluster.config().agentPid;
      process.kill(old, 'SIGTERM');
      await must(SLUICE, ['local', 'up', '--dir', cluster.dir]);
      const now = cluster.config().agentPid;
      expect(now, `round ${round}: a new agent`).not.toBe(old);
      const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as { agent: { pid: number } };
      expect(status.agent.pid).toBe(now);
      expect((await cluster.local('pod', 'create', `r/p${round}`)).code, `round ${round}: pod create`).toBe(0);
    }
  }, 120_000);
});

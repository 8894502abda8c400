/**
 * The kernel's share of the security rules is rewritten only when it
 * changes: an endpoint sync (every CNI ADD and DEL) that selects no other
 * pod for a kill or deny-connect rule writes nothing again. Pure: a fake
 * sensor counts the writes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../contract/api-types.ts';
import { SecurityRuntime } from '../agent/security/runtime.ts';
import type { SecuritySensor } from '../agent/security/sensor.ts';

const KILL_RULE = `- rule: No nc in tier=front
  desc: test
  condition: evt.type = execve and proc.name = nc and k8s.pod.label.tier = front
  output: killed
  priority: CRITICAL
  action: kill
`;

function endpoint(pod: string): Endpoint {
  return { id: 1, identity: 0, createdAt: 0, containerID: pod, ifname: 'eth0', namespace: 'x', pod, netns: `/var/run/netns/${pod}`, hostIfname: '', hostIfindex: 1, mac: '', hostMac: '', ips: [] };
}

describe('SecurityRuntime kernel actions', () => {
  it('writes the kill entries again only when the pods a rule selects change', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-actions-'));
    fs.writeFileSync(path.join(dir, 'kill.yaml'), KILL_RULE);
    const writes: string[][] = [];
    const sensor = {
      subscribe: () => () => undefined,
      track: () => undefined,
      setKill: (entries: { pod: { name: string } | '*' }[]) => (writes.push(entries.map((e) => (e.pod === '*' ? '*' : e.pod.name))), { written: 0, deleted: 0 }),
      setDenyConnect: () => ({ written: 0, deleted: 0 }),
    } as unknown as SecuritySensor;
    const labels: Record<string, Record<string, string>> = { a: { tier: 'front' }, b: { tier: 'back' }, c: { tier: 'back' }, d: { tier: 'front' } };
    try {
      const runtime = new SecurityRuntime({ sensor, ruleFiles: [dir], labels: (_ns, pod) => labels[pod] ?? {}, log: () => undefined });
      runtime.start();
      expect(writes).toEqual([[]]); // at start, always: what an older agent left goes
      runtime.track([endpoint('a')]);
      runtime.track([endpoint('a'), endpoint('b')]); // b is no front pod: nothing to write
      runtime.track([endpoint('a'), endpoint('b'), endpoint('c')]);
      runtime.track([endpoint('a'), endpoint('b'), endpoint('c'), endpoint('d')]);
      expect(writes).toEqual([[], ['a'], ['a', 'd']]);
      runtime.stop();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

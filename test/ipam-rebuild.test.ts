/**
 * Rebuilding IPAM after its store was lost or damaged, without a kernel:
 * the damage check, the move aside, the plan from what the node shows in
 * use, putting allocations back, and refusing when the rebuild cannot see
 * everything. The real-kernel case (20 pods, a truncated or overwritten
 * file) is test/store-corrupt.test.ts.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Ipam, IpamRefusedError } from '../ipam/allocator.ts';
import { planRebuild, RECOVERED_PREFIX, type NodeFacts } from '../ipam/rebuild.ts';
import { storeDamage } from '../ipam/store.ts';
import { prepareIpamStore, restoreIpamAllocations, vethLivenessPath } from '../agent/ipam-recovery.ts';
import { NoDatastore } from '../agent/datastore/datastore.ts';
import type { Endpoint } from '../contract/api-types.ts';

const inPools = (ip: string): boolean => ip.startsWith('10.9.0.');
const noFacts = (): NodeFacts => ({ endpoints: [], veths: [], endpointMap: [], pods: [] });

describe('planRebuild', () => {
  it('takes the attachment from the endpoint record first, then the veth alias, and a placeholder only when neither names one', () => {
    const plan = planRebuild(
      {
        endpoints: [{ containerID: 'c1', ifname: 'eth0', namespace: 'a', pod: 'p1', netns: '/run/netns/n1', ips: ['10.9.0.2'] }],
        veths: [
          { name: 'lxc1', containerID: 'c1', ifname: 'eth0', ips: ['10.9.0.2'] },
          { name: 'lxc2', containerID: 'c2', ifname: 'eth0', ips: ['10.9.0.3'] },
        ],
        endpointMap: [
          { ip: '10.9.0.2', hostVeth: 'lxc1' },
          { ip: '10.9.0.4', hostVeth: 'lxc4' },
        ],
        pods: [
          { namespace: 'a', name: 'p2', ips: ['10.9.0.3'] },
          { namespace: 'a', name: 'p5', ips: ['10.9.0.5', '192.168.1.5'] },
        ],
      },
      inPools,
      vethLivenessPath,
    );
    expect(plan.allocations.map((a) => [a.ip, a.containerID, a.namespace, a.pod, a.netns, a.sources.join('+')])).toEqual([
      ['10.9.0.2', 'c1', 'a', 'p1', '/run/netns/n1', 'endpoint record+veth lxc1+endpoint map'],
      ['10.9.0.3', 'c2', 'a', 'p2', '/sys/class/net/lxc2', 'veth lxc2+running pod'],
      ['10.9.0.4', `${RECOVERED_PREFIX}10.9.0.4`, '', '', '/sys/class/net/lxc4', 'endpoint map'],
      ['10.9.0.5', `${RECOVERED_PREFIX}a/p5`, 'a', 'p5', '', 'running pod'],
    ]);
    expect(plan.unplaced).toEqual([]);
  });

  it('reports an address two attachments claim, and one outside the pools, instead of placing it', () => {
    const facts = noFacts();
    facts.endpoints = [
      { containerID: 'c1', ifname: 'eth0', namespace: 'a', pod: 'p1', netns: '', ips: ['10.9.0.2'] },
      { containerID: 'c9', ifname: 'eth0', namespace: 'a', pod: 'p9', netns: '', ips: ['10.9.0.2', '172.16.0.9'] },
    ];
    const plan = planRebuild(facts, inPools, vethLivenessPath);
    expect(plan.allocations.map((a) => [a.ip, a.containerID])).toEqual([['10.9.0.2', 'c1']]);
    expect(plan.unplaced).toEqual([
      { ip: '10.9.0.2', why: 'endpoint record names c9/eth0, but c1/eth0 holds it' },
      { ip: '172.16.0.9', why: 'endpoint record c9/eth0: outside the pod CIDRs, never handed out' },
    ]);
  });
});

describe('a lost or damaged store at start', () => {
  let dir: string;
  let file: string;
  const logs: string[] = [];
  const log = (m: string): void => void logs.push(m);
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-rebuild-'));
    file = path.join(dir, 'ipam.db');
    logs.length = 0;
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A store holding a few allocations, written into the main file (no WAL left). */
  function storeWithAllocations(): void {
    const ipam = new Ipam(file, ['10.9.0.0/24']);
    for (let i = 0; i < 40; i++) ipam.allocate({ containerID: `k${i}`, ifname: 'eth0' });
    ipam.close();
  }

  const endpoint = (containerID: string, ip: string): Endpoint => ({
    containerID, ifname: 'eth0', namespace: 'a', pod: containerID, netns: '', hostIfname: '', hostIfindex: 0, mac: '', hostMac: '', ips: [ip], id: 1, identity: 0, createdAt: 0,
  });
  const emptyMap = { keys: () => [], lookup: () => null };

  it('a healthy store is no damage; a truncated one or one of random bytes is, and is moved aside with its -wal and -shm', () => {
    storeWithAllocations();
    expect(storeDamage(file)).toBeNull();
    expect(storeDamage(path.join(dir, 'none.db'))).toBeNull();
    fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
    expect(storeDamage(file)).toMatch(/malformed|integrity_check/);
    fs.writeFileSync(file, randomBytes(8192));
    fs.writeFileSync(`${file}-wal`, 'x');
    expect(storeDamage(file)).toMatch(/not a database/);
    const check = prepareIpamStore(file, log, new Date('2026-01-02T03:04:05.678Z'));
    expect(check).toMatchObject({ file, missing: false, refusal: null, movedTo: `${file}.damaged-2026-01-02T03-04-05-678Z` });
    expect(fs.readdirSync(dir).sort()).toEqual(['ipam.db.damaged-2026-01-02T03-04-05-678Z', 'ipam.db.damaged-2026-01-02T03-04-05-678Z-shm', 'ipam.db.damaged-2026-01-02T03-04-05-678Z-wal']);
    expect(logs[0]).toContain(`moved aside to ${check.movedTo}`);
  });

  it('puts back what the node uses, moves the frontier above it, and never hands it out again', async () => {
    const check = prepareIpamStore(file, log);
    expect(check.missing).toBe(true);
    const ipam = new Ipam(check.file, ['10.9.0.0/24']);
    try {
      const report = await restoreIpamAllocations({
        ipam, check, endpoints: [endpoint('c1', '10.9.0.7'), endpoint('c2', '10.9.0.3')], endpointMap: emptyMap,
        datastore: new NoDatastore(), nodeName: 'n', socket: `/run/sluice/none-${process.pid}.sock`, log,
      });
      expect(report).toMatchObject({ placed: 2, unreadable: [] });
      expect(ipam.list().map((a) => [a.ip, a.containerID])).toEqual([['10.9.0.3', 'c2'], ['10.9.0.7', 'c1']]);
      expect(ipam.allocate({ containerID: 'new', ifname: 'eth0' })[0]!.ip).toBe('10.9.0.8');
      expect(logs.join('\n')).toMatch(/IPAM rebuilt \(the store was missing\): 2 allocation\(s\) put back: 10\.9\.0\.7 a\/c1/);
      // Putting the same back again changes nothing; another attachment's claim is a conflict, not a change.
      expect(ipam.restore([{ ip: '10.9.0.3', containerID: 'c2', ifname: 'eth0', namespace: '', pod: '', netns: '' }]).placed).toEqual([]);
      expect(ipam.restore([{ ip: '10.9.0.3', containerID: 'zz', ifname: 'eth0', namespace: '', pod: '', netns: '' }]).conflicts).toMatchObject([{ heldBy: 'c2/eth0' }]);
    } finally {
      ipam.close();
    }
  });

  it('a healthy store gets back only the addresses of endpoint records it lacks, and says so', async () => {
    storeWithAllocations();
    const check = prepareIpamStore(file, log);
    const ipam = new Ipam(check.file, ['10.9.0.0/24']);
    try {
      const held = ipam.addressesOf('k0', 'eth0')[0]!;
      const report = await restoreIpamAllocations({
        ipam, check, endpoints: [endpoint('k0', held), endpoint('lost', '10.9.0.200')], endpointMap: emptyMap,
        datastore: new NoDatastore(), nodeName: 'n', socket: '/nonexistent', log,
      });
      expect(report.placed).toBe(1);
      expect(ipam.addressesOf('lost', 'eth0')).toEqual(['10.9.0.200']);
      expect(logs.join('\n')).toMatch(/the store lacked 1 address\(es\) of registered endpoints.*10\.9\.0\.200/);
    } finally {
      ipam.close();
    }
  });

  it('refuses allocations, saying what to do, when the rebuild cannot read a source', async () => {
    fs.writeFileSync(file, randomBytes(8192));
    const check = prepareIpamStore(file, log);
    const ipam = new Ipam(check.file, ['10.9.0.0/24']);
    try {
      const datastore = Object.assign(new NoDatastore(), { ready: () => false });
      const report = await restoreIpamAllocations({ ipam, check, endpoints: [], endpointMap: emptyMap, datastore, nodeName: 'n', socket: '/nonexistent', log });
      expect(report.unreadable).toEqual([expect.stringMatching(/^the datastore: none has not listed/)]);
      expect(() => ipam.allocate({ containerID: 'x', ifname: 'eth0' })).toThrow(IpamRefusedError);
      expect(ipam.refusal).toMatch(/damaged \(moved aside to .*\.damaged-.*\) and the rebuild could not read the datastore.*restart the agent/);
      expect(ipam.release({ containerID: 'x', ifname: 'eth0' })).toEqual([]);
    } finally {
      ipam.close();
    }
  });

  it('opens an in-memory store and refuses when the damaged file cannot be moved aside', () => {
    fs.writeFileSync(file, randomBytes(8192));
    const now = new Date('2026-01-02T03:04:05.678Z');
    // The name it would move to is taken by a directory that is not empty: the rename fails, for root too.
    fs.mkdirSync(path.join(`${file}.damaged-2026-01-02T03-04-05-678Z`, 'x'), { recursive: true });
    const check = prepareIpamStore(file, log, now);
    expect(check).toMatchObject({ file: ':memory:', movedTo: null });
    expect(check.refusal).toMatch(/ipam\.db is damaged \(file is not a database\) and could not be moved aside .*then restart the agent/);
    const ipam = new Ipam(check.file, ['10.9.0.0/24']);
    ipam.close();
  });
});

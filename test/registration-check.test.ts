/**
 * A registration must match what the agent handed out: the allocation's
 * addresses exactly, no address or veth of another endpoint, and a host veth
 * that exists with the index and MAC named. Each refusal says which check.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint, EndpointSpec } from '../contract/api-types.ts';
import { checkRegistration, type HostInterfaceReader } from '../agent/api/registration-check.ts';
import { groupId, mayWrite } from '../agent/api/peer.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const spec: EndpointSpec = {
  containerID: 'c1',
  ifname: 'eth0',
  namespace: 'x',
  pod: 'a',
  netns: '/var/run/netns/a',
  hostIfname: 'slc1',
  hostIfindex: 11,
  mac: '02:00:00:00:00:01',
  hostMac: '02:00:00:00:00:aa',
  ips: ['10.0.0.5', 'fd00::5'],
};
const host: HostInterfaceReader = async (ifname) =>
  ({ slc1: { index: 11, mac: '02:00:00:00:00:AA', kind: 'veth' }, slc2: { index: 12, mac: '02:00:00:00:00:bb', kind: 'veth' }, br9: { index: 13, mac: '02:00:00:00:00:cc', kind: 'bridge' } })[ifname];
const other: Endpoint = { ...spec, containerID: 'c2', pod: 'b', hostIfname: 'slc2', hostIfindex: 12, ips: ['10.0.0.6'], id: 2, identity: 300, createdAt: 0 };
const check = (s: Partial<EndpointSpec>, allocated = ['10.0.0.5', 'fd00:0::5'], endpoints: Endpoint[] = [other]) =>
  checkRegistration({ ...spec, ...s }, allocated, endpoints, host);

describe('checkRegistration', () => {
  it('accepts the attachment ADD allocated, on its own veth (a retry of the same one too)', async () => {
    await expect(check({})).resolves.toBeUndefined();
    await expect(check({}, undefined, [other, { ...other, ...spec, id: 1, identity: 300, createdAt: 0 }])).resolves.toBeUndefined();
  });

  it('refuses each mismatch with its own kind and message', async () => {
    await expect(check({}, [])).rejects.toThrow(expect.objectContaining({ status: 409, kind: 'NoAllocation' }));
    await expect(check({ ips: ['10.0.0.5'] })).rejects.toThrow(expect.objectContaining({ kind: 'AddressMismatch' }));
    await expect(check({ ips: ['10.0.0.6', 'fd00::5'] })).rejects.toThrow(expect.objectContaining({ kind: 'AddressMismatch' }));
    await expect(check({ ips: ['10.0.0.6'] }, ['10.0.0.6'])).rejects.toThrow(expect.objectContaining({ kind: 'AddressInUse', message: expect.stringMatching(/registered to c2\/eth0 \(x\/b\)/) }));
    await expect(check({ hostIfname: 'slc2', hostIfindex: 12, hostMac: '02:00:00:00:00:bb' })).rejects.toThrow(expect.objectContaining({ kind: 'VethInUse' }));
    await expect(check({ hostIfname: 'slc9' })).rejects.toThrow(expect.objectContaining({ kind: 'NoSuchVeth' }));
    await expect(check({ hostIfindex: 99 })).rejects.toThrow(expect.objectContaining({ kind: 'VethMismatch', message: expect.stringMatching(/ifindex 11, not 99/) }));
    await expect(check({ hostMac: '02:00:00:00:00:ab' })).rejects.toThrow(expect.objectContaining({ kind: 'VethMismatch', message: expect.stringMatching(/MAC/) }));
    await expect(check({ hostIfname: 'br9', hostIfindex: 13, hostMac: '02:00:00:00:00:cc' })).rejects.toThrow(expect.objectContaining({ kind: 'VethMismatch', message: expect.stringMatching(/bridge device, not a veth/) }));
  });
});

describe('API access', () => {
  it('writes are root, or a uid given; an unknown peer may not', () => {
    expect(mayWrite({ pid: 1, uid: 0, gid: 0 }, { gid: 100, writerUids: [] })).toBe(true);
    expect(mayWrite({ pid: 1, uid: 1000, gid: 100 }, { gid: 100, writerUids: [] })).toBe(false);
    expect(mayWrite({ pid: 1, uid: 1000, gid: 100 }, { gid: 100, writerUids: [1000] })).toBe(true);
    expect(mayWrite(null, { gid: null, writerUids: [1000] })).toBe(false);
  });

  it('reads a group by name or number, and refuses one that does not exist', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'grp-')), 'group');
    fs.writeFileSync(file, 'root:x:0:\nsluice-readers:x:1234:alice,bob\n');
    expect(groupId('sluice-readers', file)).toBe(1234);
    expect(groupId('77', file)).toBe(77);
    expect(() => groupId('nobody-here', file)).toThrow(/no such group/);
    fs.rmSync(path.dirname(file), { recursive: true });
  });
});

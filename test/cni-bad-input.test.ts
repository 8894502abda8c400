/**
 * Bad input gets a CNI error object on stdout and a non-zero exit, and leaves
 * nothing behind: no veth, no allocation.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostVethName } from '../cni/names.ts';
import { must, sh, SLUICE_CNI, TestCluster } from './support/local-cluster.ts';

const CONTAINER_ID = 'badinput0123456789';

describe('sluice-cni with bad input', () => {
  const cluster = new TestCluster();
  const netns = `${cluster.name}-bad`;

  beforeAll(async () => {
    await cluster.up();
    await must('ip', ['netns', 'add', netns]);
  });
  afterAll(async () => {
    await sh('ip', ['netns', 'del', netns]);
    await cluster.teardown();
  });

  function add(stdin: string, env: Record<string, string> = {}) {
    return sh(SLUICE_CNI, [], {
      input: stdin,
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: CONTAINER_ID,
        CNI_NETNS: `/var/run/netns/${netns}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/opt/cni/bin',
        ...env,
      },
    });
  }

  async function expectNothingLeft(): Promise<void> {
    const links = await must('ip', ['-o', 'link', 'show']);
    expect(links).not.toContain(hostVethName(CONTAINER_ID, 'eth0'));
    const inPod = await must('ip', ['-n', netns, '-o', 'link', 'show']);
    expect(inPod).not.toContain('eth0');
    const ipam = JSON.parse(await must('dist/sluice', ['status', '--socket', cluster.socket, '-o', 'json'])) as { pools: { used: number }[] };
    expect(ipam.pools[0]!.used).toBe(0);
    expect(fs.readdirSync(`${cluster.bpfDir}/links`)).toEqual([]);
  }

  const good = (extra: object = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'sluice', type: 'sluice', socket: cluster.socket, ...extra });
  const cases: [string, () => string, Record<string, string>, number][] = [
    ['not JSON', () => 'this is not json', {}, 6],
    ['an unknown cniVersion', () => JSON.stringify({ cniVersion: '9.9.9', name: 'sluice', type: 'sluice' }), {}, 1],
    ['missing name and type', () => JSON.stringify({ cniVersion: '1.0.0' }), {}, 7],
    ['a field of the wrong type', () => good({ mtu: 'big' }), {}, 7],
    ['an ifname with a slash', () => good(), { CNI_IFNAME: 'eth0/x' }, 4],
    ['a netns path that is not a network namespace', () => good(), { CNI_NETNS: '/tmp' }, 4],
    ['an agent that is not running', () => good({ socket: '/run/sluice/nobody-here.sock' }), {}, 11],
  ];
  for (const [what, stdin, env, code] of cases) {
    it(`answers ${what} with CNI error code ${code} and leaves nothing behind`, async () => {
      const r = await add(stdin(), env);
      expect(r.code).not.toBe(0);
      const err = JSON.parse(r.stdout) as { cniVersion: string; code: number; msg: string };
      expect(err.code).toBe(code);
      expect(typeof err.msg).toBe('string');
      expect(err.cniVersion).toMatch(/^\d+\.\d+\.\d+$/);
      await expectNothingLeft();
    });
  }

  it('succeeds with the standard fields alone, and DEL is idempotent', async () => {
    const r = await add(good());
    expect(r.code, r.stdout).toBe(0);
    const result = JSON.parse(r.stdout) as { cniVersion: string; ips: { address: string }[]; interfaces: { name: string; sandbox?: string }[] };
    expect(result.cniVersion).toBe('1.0.0');
    expect(result.interfaces.map((i) => i.name)).toEqual([hostVethName(CONTAINER_ID, 'eth0'), 'eth0']);
    const del = (netnsPath: string) =>
      sh(SLUICE_CNI, [], {
        input: good(),
        env: { PATH: process.env.PATH, CNI_COMMAND: 'DEL', CNI_CONTAINERID: CONTAINER_ID, CNI_NETNS: netnsPath, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' },
      });
    for (const netnsPath of [`/var/run/netns/${netns}`, `/var/run/netns/${netns}`, '']) {
      const d = await del(netnsPath);
      expect(d.code, d.stdout).toBe(0);
      expect(d.stdout).toBe('');
    }
    await expectNothingLeft();
  });

  it('answers VERSION with every supported version', async () => {
    const r = await sh(SLUICE_CNI, [], { input: '{"cniVersion":"1.1.0"}', env: { CNI_COMMAND: 'VERSION' } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });
});

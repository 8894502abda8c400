import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hostVethName } from '../cni/names.ts';
import { sha256Hex } from '../lib/sha256-hex.ts';
import {
  MAX_CONTAINER_ID_LENGTH,
  checkVerbAllowed,
  parseCniArgs,
  parseEnv,
  parseNetConf,
  podIdentity,
} from '../cni/config.ts';
import { formatResult, parsePrevResult, versionResult } from '../cni/result.ts';
import {
  CNI_ERR,
  CURRENT_VERSION,
  CniError,
  DEFAULT_AGENT_SOCKET,
  SUPPORTED_VERSIONS,
  compareVersions,
  isSupportedVersion,
  type CniResult,
  type CniVerb,
  type CniVersion,
} from '../cni/spec.ts';

/** Runs fn, expects a CniError, and returns it. */
function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err: unknown) {
    expect(err).toBeInstanceOf(CniError);
    return err as CniError;
  }
  throw new Error('expected a CniError, nothing was thrown');
}

const conf = (o: Record<string, unknown>): string => JSON.stringify({ cniVersion: '1.1.0', name: 'sluice', type: 'sluice', ...o });

const ADD_ENV = {
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: '3f6940ab5ab43bc522569d15b23f8c1bbde1d7678b080398506924fc01d72755',
  CNI_NETNS: '/var/run/netns/cni-1234',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin:/usr/libexec/cni',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=3f69;K8S_POD_UID=1234-abcd',
};

const RESULT: CniResult = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'lxc3f69', mac: '02:00:00:00:00:01' },
    { name: 'eth0', mac: '02:00:00:00:00:02', mtu: 1450, sandbox: '/var/run/netns/cni-1234' },
  ],
  ips: [
    { address: '10.244.1.7/32', gateway: '10.244.1.1', interface: 1 },
    { address: 'fd00:10::7/128', gateway: 'fd00:10::1', interface: 1 },
  ],
  routes: [
    { dst: '0.0.0.0/0', gw: '10.244.1.1', mtu: 1450, advmss: 1410, priority: 10, table: 254, scope: 0 },
    { dst: '::/0' },
  ],
  dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local'] },
};

describe('spec constants', () => {
  it('supports 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0, with 1.1.0 current', () => {
    expect([...SUPPORTED_VERSIONS]).toEqual(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    expect(CURRENT_VERSION).toBe('1.1.0');
  });

  it('uses the spec error codes', () => {
    expect(CNI_ERR).toEqual({
      INCOMPATIBLE_VERSION: 1,
      UNSUPPORTED_FIELD: 2,
      UNKNOWN_CONTAINER: 3,
      INVALID_ENV: 4,
      IO: 5,
      DECODE: 6,
      INVALID_CONFIG: 7,
      TRY_AGAIN_LATER: 11,
      NOT_AVAILABLE: 50,
      NOT_AVAILABLE_LIMITED: 51,
    });
  });

  it('recognises only supported versions', () => {
    for (const v of SUPPORTED_VERSIONS) expect(isSupportedVersion(v)).toBe(true);
    for (const v of ['0.1.0', '0.2.0', '1.2.0', '1.1', '', 1]) expect(isSupportedVersion(v)).toBe(false);
  });

  it('compares versions numerically, not as text', () => {
    expect(compareVersions('0.10.0', '0.4.0')).toBeGreaterThan(0);
    expect(compareVersions('0.3.1', '0.4.0')).toBeLessThan(0);
    expect(compareVersions('1.1.0', '1.1.0')).toBe(0);
    expect(() => compareVersions('1.1', '1.1.0')).toThrow(/MAJOR.MINOR.PATCH/);
  });
});

describe('CniError', () => {
  it('serialises to {cniVersion, code, msg, details} for the given version', () => {
    const err = new CniError(7, 'bad config', 'more words');
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe(7);
    expect(err.toJSON('0.4.0')).toEqual({ cniVersion: '0.4.0', code: 7, msg: 'bad config', details: 'more words' });
    expect(Object.keys(err.toJSON('0.4.0'))).toEqual(['cniVersion', 'code', 'msg', 'details']);
  });

  it('omits details when there are none', () => {
    expect(new CniError(11, 'later').toJSON('1.1.0')).toEqual({ cniVersion: '1.1.0', code: 11, msg: 'later' });
  });

  it('falls back to the current version under JSON.stringify', () => {
    expect(JSON.parse(JSON.stringify(new CniError(5, 'io')))).toEqual({ cniVersion: CURRENT_VERSION, code: 5, msg: 'io' });
  });
});

describe('parseNetConf', () => {
  it('parses a minimal configuration and fills in the agent socket default', () => {
    expect(parseNetConf(conf({}))).toEqual({ cniVersion: '1.1.0', name: 'sluice', type: 'sluice', socket: DEFAULT_AGENT_SOCKET });
    expect(DEFAULT_AGENT_SOCKET).toBe('/run/sluice/sluice.sock');
  });

  it('accepts a Buffer', () => {
    expect(parseNetConf(Buffer.from(conf({}))).name).toBe('sluice');
  });

  it('accepts every supported cniVersion', () => {
    for (const v of SUPPORTED_VERSIONS) expect(parseNetConf(conf({ cniVersion: v })).cniVersion).toBe(v);
  });

  it('keeps Sluice and spec fields', () => {
    const c = parseNetConf(
      conf({
        socket: '/tmp/agent.sock',
        mtu: 1450,
        logFile: '/var/log/sluice-cni.log',
        dns: { nameservers: ['10.96.0.10'], domain: 'cluster.local', search: ['svc.cluster.local'], options: ['ndots:5'] },
        prevResult: { cniVersion: '1.1.0', interfaces: [] },
        runtimeConfig: { portMappings: [] },
        capabilities: { portMappings: true },
        args: { cni: { K8S_POD_NAME: 'x' } },
      }),
    );
    expect(c).toEqual({
      cniVersion: '1.1.0',
      name: 'sluice',
      type: 'sluice',
      socket: '/tmp/agent.sock',
      mtu: 1450,
      logFile: '/var/log/sluice-cni.log',
      dns: { nameservers: ['10.96.0.10'], domain: 'cluster.local', search: ['svc.cluster.local'], options: ['ndots:5'] },
      prevResult: { cniVersion: '1.1.0', interfaces: [] },
      runtimeConfig: { portMappings: [] },
      capabilities: { portMappings: true },
      args: { cni: { K8S_POD_NAME: 'x' } },
    });
  });

  it('ignores unknown fields instead of rejecting them', () => {
    const c = parseNetConf(conf({ ipam: { type: 'host-local' }, someVendorKey: [1, 2, 3] }));
    expect(c).toEqual({ cniVersion: '1.1.0', name: 'sluice', type: 'sluice', socket: DEFAULT_AGENT_SOCKET });
  });

  it('reads cni.dev/valid-attachments for GC', () => {
    const c = parseNetConf(conf({ 'cni.dev/valid-attachments': [{ containerID: 'abc', ifname: 'eth0' }] }));
    expect(c.validAttachments).toEqual([{ containerID: 'abc', ifname: 'eth0' }]);
  });

  it('falls back to the older cni.dev/attachments key libcni also sets', () => {
    const c = parseNetConf(conf({ 'cni.dev/attachments': [{ containerID: 'abc', ifname: 'eth0' }] }));
    expect(c.validAttachments).toEqual([{ containerID: 'abc', ifname: 'eth0' }]);
  });

  it('rejects malformed valid-attachments with code 7 naming the entry', () => {
    const e = cniError(() => parseNetConf(conf({ 'cni.dev/valid-attachments': [{ containerID: 'abc' }] })));
    expect(e.code).toBe(7);
    expect(e.message).toContain('cni.dev/valid-attachments[0]');
    expect(cniError(() => parseNetConf(conf({ 'cni.dev/valid-attachments': {} }))).code).toBe(7);
  });

  it('rejects invalid JSON with code 6 and the parser error in details', () => {
    const e = cniError(() => parseNetConf('{"cniVersion": "1.1.0",'));
    expect(e.code).toBe(6);
    expect(e.message).toMatch(/not valid JSON/);
    expect(e.details).toBeTruthy();
  });

  it('rejects empty stdin with code 6', () => {
    const e = cniError(() => parseNetConf('  \n'));
    expect(e.code).toBe(6);
    expect(e.message).toMatch(/empty/);
  });

  it('rejects JSON that is not an object with code 6', () => {
    for (const text of ['[]', '"sluice"', '42', 'null']) expect(cniError(() => parseNetConf(text)).code).toBe(6);
  });

  it('rejects a missing cniVersion with code 7 naming the field', () => {
    const e = cniError(() => parseNetConf(JSON.stringify({ name: 'sluice', type: 'sluice' })));
    expect(e.code).toBe(7);
    expect(e.message).toContain("'cniVersion' is missing");
  });

  it('rejects a cniVersion that is not a string or not a version with code 7', () => {
    for (const v of [1.1, '1.1', 'latest', '', null]) {
      const e = cniError(() => parseNetConf(conf({ cniVersion: v })));
      expect(e.code).toBe(7);
      expect(e.message).toContain('cniVersion');
    }
  });

  it('rejects an unsupported cniVersion with code 1 and the supported list in details', () => {
    for (const v of ['0.1.0', '0.2.0', '2.0.0', '1.2.0']) {
      const e = cniError(() => parseNetConf(conf({ cniVersion: v })));
      expect(e.code).toBe(1);
      expect(e.message).toContain(v);
      expect(e.details).toBe('supported versions: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0');
    }
  });

  it('rejects a missing name with code 7 naming the field', () => {
    const e = cniError(() => parseNetConf(JSON.stringify({ cniVersion: '1.1.0', type: 'sluice' })));
    expect(e.code).toBe(7);
    expect(e.message).toContain("'name' is missing");
  });

  it('rejects a name that is not a string with code 7', () => {
    expect(cniError(() => parseNetConf(conf({ name: 5 }))).code).toBe(7);
  });

  it('rejects network names outside the spec charset with code 7', () => {
    for (const name of ['', '-net', '_net', '.net', 'my net', 'net/1', 'net:1', 'nét']) {
      const e = cniError(() => parseNetConf(conf({ name })));
      expect(e.code).toBe(7);
      expect(e.message).toContain("'name'");
    }
  });

  it('accepts network names that match the spec charset', () => {
    for (const name of ['k8s-pod-network', 'a', '0net', 'my_net.v1-2']) expect(parseNetConf(conf({ name })).name).toBe(name);
  });

  it('rejects a missing type with code 7 naming the field', () => {
    const e = cniError(() => parseNetConf(JSON.stringify({ cniVersion: '1.1.0', name: 'sluice' })));
    expect(e.code).toBe(7);
    expect(e.message).toContain("'type' is missing");
  });

  it('rejects a type that is not a string, empty, or contains a path separator with code 7', () => {
    for (const type of [1, '', '../sluice', 'bin\\sluice']) {
      const e = cniError(() => parseNetConf(conf({ type })));
      expect(e.code).toBe(7);
      expect(e.message).toContain("'type'");
    }
  });

  it('rejects wrongly typed Sluice fields with code 7 naming the field', () => {
    const cases: [string, unknown][] = [
      ['socket', 5],
      ['socket', 'relative/agent.sock'],
      ['mtu', '1500'],
      ['mtu', 1500.5],
      ['mtu', 67],
      ['mtu', 65536],
      ['logFile', true],
      ['logFile', ''],
    ];
    for (const [field, value] of cases) {
      const e = cniError(() => parseNetConf(conf({ [field]: value })));
      expect(e.code).toBe(7);
      expect(e.message).toContain(`'${field}'`);
    }
  });

  it('rejects wrongly typed spec fields with code 7 naming the field', () => {
    const cases: [string, unknown, string][] = [
      ['dns', 'x', 'dns'],
      ['dns', { nameservers: '10.0.0.1' }, 'dns.nameservers'],
      ['dns', { domain: 1 }, 'dns.domain'],
      ['dns', { search: [1] }, 'dns.search'],
      ['dns', { options: {} }, 'dns.options'],
      ['prevResult', [], 'prevResult'],
      ['runtimeConfig', 'x', 'runtimeConfig'],
      ['capabilities', null, 'capabilities'],
      ['args', 'K=V', 'args'],
    ];
    for (const [field, value, named] of cases) {
      const e = cniError(() => parseNetConf(conf({ [field]: value })));
      expect(e.code).toBe(7);
      expect(e.message).toContain(`'${named}'`);
    }
  });

  it('tells the operator where to fix the configuration', () => {
    expect(cniError(() => parseNetConf(conf({ mtu: 'big' }))).message).toMatch(/conflist/);
  });
});

describe('parseCniArgs', () => {
  it('parses K=V pairs separated by semicolons', () => {
    expect(parseCniArgs('FOO=BAR;ABC=123')).toEqual({ FOO: 'BAR', ABC: '123' });
  });

  it('returns nothing for an empty string', () => {
    expect(parseCniArgs('')).toEqual({});
  });

  it('allows an empty value', () => {
    expect(parseCniArgs('K8S_POD_UID=')).toEqual({ K8S_POD_UID: '' });
  });

  it('skips empty segments such as a trailing semicolon', () => {
    expect(parseCniArgs('A=1;;B=2;')).toEqual({ A: '1', B: '2' });
  });

  it('lets a repeated key take its last value', () => {
    expect(parseCniArgs('A=1;A=2')).toEqual({ A: '2' });
  });

  it('rejects a pair without "=" with code 4', () => {
    const e = cniError(() => parseCniArgs('A=1;oops'));
    expect(e.code).toBe(4);
    expect(e.message).toContain('CNI_ARGS');
    expect(e.message).toContain('"oops"');
  });

  it('rejects a pair with more than one "=" with code 4', () => {
    expect(cniError(() => parseCniArgs('A=1=2')).code).toBe(4);
  });

  it('rejects a pair with an empty key with code 4', () => {
    expect(cniError(() => parseCniArgs('=1')).code).toBe(4);
  });
});

describe('parseEnv', () => {
  const without = (env: Record<string, string>, ...keys: string[]): Record<string, string> => {
    const out = { ...env };
    for (const k of keys) delete out[k];
    return out;
  };

  it('parses a complete ADD environment', () => {
    expect(parseEnv(ADD_ENV)).toEqual({
      command: 'ADD',
      containerId: ADD_ENV.CNI_CONTAINERID,
      netns: '/var/run/netns/cni-1234',
      ifname: 'eth0',
      args: {
        IgnoreUnknown: '1',
        K8S_POD_NAMESPACE: 'default',
        K8S_POD_NAME: 'web-0',
        K8S_POD_INFRA_CONTAINER_ID: '3f69',
        K8S_POD_UID: '1234-abcd',
      },
      path: ['/opt/cni/bin', '/usr/libexec/cni'],
    });
  });

  it('returns empty args when CNI_ARGS is absent', () => {
    expect(parseEnv(without(ADD_ENV, 'CNI_ARGS')).args).toEqual({});
  });

  it('rejects a missing CNI_COMMAND with code 4 naming it', () => {
    const e = cniError(() => parseEnv(without(ADD_ENV, 'CNI_COMMAND')));
    expect(e.code).toBe(4);
    expect(e.message).toContain('CNI_COMMAND');
  });

  it('rejects an unknown CNI_COMMAND with code 4', () => {
    for (const command of ['GET', 'add', 'INIT', 'FINALIZE']) {
      const e = cniError(() => parseEnv({ ...ADD_ENV, CNI_COMMAND: command }));
      expect(e.code).toBe(4);
      expect(e.message).toContain(command);
    }
  });

  for (const verb of ['ADD', 'CHECK'] as const) {
    for (const name of ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH']) {
      it(`rejects ${verb} without ${name} with code 4 naming it`, () => {
        const e = cniError(() => parseEnv({ ...without(ADD_ENV, name), CNI_COMMAND: verb }));
        expect(e.code).toBe(4);
        expect(e.message).toContain(name);
      });
    }
  }

  for (const name of ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH']) {
    it(`rejects DEL without ${name} with code 4 naming it`, () => {
      const e = cniError(() => parseEnv({ ...without(ADD_ENV, name), CNI_COMMAND: 'DEL' }));
      expect(e.code).toBe(4);
      expect(e.message).toContain(name);
    });
  }

  it('treats an empty variable as missing', () => {
    expect(cniError(() => parseEnv({ ...ADD_ENV, CNI_NETNS: '' })).message).toContain('CNI_NETNS');
  });

  it('names every missing variable at once', () => {
    const e = cniError(() => parseEnv({ CNI_COMMAND: 'ADD' }));
    expect(e.code).toBe(4);
    for (const name of ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH']) expect(e.message).toContain(name);
  });

  it('accepts DEL without CNI_NETNS', () => {
    const env = parseEnv({ ...without(ADD_ENV, 'CNI_NETNS'), CNI_COMMAND: 'DEL' });
    expect(env.command).toBe('DEL');
    expect(env.netns).toBe('');
  });

  it('accepts STATUS and VERSION with only CNI_COMMAND', () => {
    for (const verb of ['STATUS', 'VERSION'] as const) {
      expect(parseEnv({ CNI_COMMAND: verb })).toEqual({ command: verb, containerId: '', netns: '', ifname: '', args: {}, path: [] });
    }
  });

  it('accepts GC with CNI_COMMAND and CNI_PATH', () => {
    expect(parseEnv({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' })).toEqual({
      command: 'GC',
      containerId: '',
      netns: '',
      ifname: '',
      args: {},
      path: ['/opt/cni/bin'],
    });
  });

  it('rejects GC without CNI_PATH with code 4', () => {
    const e = cniError(() => parseEnv({ CNI_COMMAND: 'GC' }));
    expect(e.code).toBe(4);
    expect(e.message).toContain('CNI_PATH');
  });

  it('answers VERSION even when CNI_ARGS is malformed', () => {
    expect(parseEnv({ CNI_COMMAND: 'VERSION', CNI_ARGS: 'garbage' }).args).toEqual({});
  });

  it('rejects malformed CNI_ARGS for STATUS and GC with code 4', () => {
    expect(cniError(() => parseEnv({ CNI_COMMAND: 'STATUS', CNI_ARGS: 'garbage' })).code).toBe(4);
    expect(cniError(() => parseEnv({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin', CNI_ARGS: 'garbage' })).code).toBe(4);
  });

  it('ignores attachment variables for STATUS, GC and VERSION, even invalid ones', () => {
    const env = parseEnv({ CNI_COMMAND: 'STATUS', CNI_CONTAINERID: '-bad', CNI_IFNAME: 'a/b', CNI_NETNS: '/x' });
    expect(env).toMatchObject({ containerId: '', ifname: '', netns: '' });
  });

  it('drops empty CNI_PATH entries', () => {
    expect(parseEnv({ ...ADD_ENV, CNI_PATH: ':/opt/cni/bin::' }).path).toEqual(['/opt/cni/bin']);
  });

  it('accepts a container ID at the length limit', () => {
    const id = 'a'.repeat(MAX_CONTAINER_ID_LENGTH);
    expect(parseEnv({ ...ADD_ENV, CNI_CONTAINERID: id }).containerId).toBe(id);
  });

  it('rejects a container ID longer than the limit with code 4', () => {
    const e = cniError(() => parseEnv({ ...ADD_ENV, CNI_CONTAINERID: 'a'.repeat(MAX_CONTAINER_ID_LENGTH + 1) }));
    expect(e.code).toBe(4);
    expect(e.message).toContain('CNI_CONTAINERID');
  });

  it('rejects a container ID outside the spec charset with code 4', () => {
    for (const id of ['-abc', '_abc', '.abc', 'abc def', 'abc/def', 'abc:def', 'äbc']) {
      const e = cniError(() => parseEnv({ ...ADD_ENV, CNI_CONTAINERID: id }));
      expect(e.code).toBe(4);
      expect(e.message).toContain('CNI_CONTAINERID');
    }
  });

  it('validates the container ID for DEL and CHECK too', () => {
    for (const verb of ['DEL', 'CHECK']) expect(cniError(() => parseEnv({ ...ADD_ENV, CNI_COMMAND: verb, CNI_CONTAINERID: '-x' })).code).toBe(4);
  });

  it('accepts an ifname of exactly 15 bytes', () => {
    expect(parseEnv({ ...ADD_ENV, CNI_IFNAME: 'a'.repeat(15) }).ifname).toBe('a'.repeat(15));
  });

  it('rejects an ifname longer than 15 bytes with code 4', () => {
    const e = cniError(() => parseEnv({ ...ADD_ENV, CNI_IFNAME: 'a'.repeat(16) }));
    expect(e.code).toBe(4);
    expect(e.message).toContain('CNI_IFNAME');
    expect(e.message).toContain('15 bytes');
  });

  it('counts ifname length in bytes, not characters', () => {
    // 8 characters, 16 bytes in UTF-8.
    expect(cniError(() => parseEnv({ ...ADD_ENV, CNI_IFNAME: 'éééééééé' })).code).toBe(4);
  });

  it("rejects an ifname of '.' or '..' with code 4", () => {
    for (const ifname of ['.', '..']) expect(cniError(() => parseEnv({ ...ADD_ENV, CNI_IFNAME: ifname })).code).toBe(4);
  });

  it("rejects an ifname containing '/', ':' or whitespace with code 4", () => {
    for (const ifname of ['eth0/x', 'eth0:1', 'eth 0', 'eth\t0', 'eth\n0', 'eth\u00a00', 'eth\u00850']) {
      const e = cniError(() => parseEnv({ ...ADD_ENV, CNI_IFNAME: ifname }));
      expect(e.code).toBe(4);
      expect(e.message).toContain('CNI_IFNAME');
    }
  });

  it('accepts ordinary interface names', () => {
    for (const ifname of ['eth0', 'net1', 'veth-a.b_c', '...']) expect(parseEnv({ ...ADD_ENV, CNI_IFNAME: ifname }).ifname).toBe(ifname);
  });

  it('rejects malformed CNI_ARGS with code 4', () => {
    for (const verb of ['ADD', 'DEL', 'CHECK']) {
      expect(cniError(() => parseEnv({ ...ADD_ENV, CNI_COMMAND: verb, CNI_ARGS: 'K8S_POD_NAME' })).code).toBe(4);
    }
  });

  it('tells the operator what a valid ifname looks like', () => {
    const msg = cniError(() => parseEnv({ ...ADD_ENV, CNI_IFNAME: 'eth0/x' })).message;
    expect(msg).toContain('CNI_IFNAME "eth0/x" is invalid');
    expect(msg).toContain("interface names are 1 to 15 bytes, not '.' or '..', and contain no '/', ':' or whitespace");
  });
});

describe('podIdentity', () => {
  it('reads the K8S_POD_* keys from CNI_ARGS', () => {
    expect(podIdentity(parseEnv(ADD_ENV), {})).toEqual({ namespace: 'default', name: 'web-0', infraContainerId: '3f69', uid: '1234-abcd' });
  });

  it('returns nothing when neither source has the keys', () => {
    expect(podIdentity({ args: {} }, {})).toEqual({});
  });

  it('lets args.cni in the configuration override CNI_ARGS key by key', () => {
    const id = podIdentity(parseEnv(ADD_ENV), { args: { cni: { K8S_POD_NAMESPACE: 'kube-system', K8S_POD_UID: 'u-2' } } });
    expect(id).toEqual({ namespace: 'kube-system', name: 'web-0', infraContainerId: '3f69', uid: 'u-2' });
  });

  it('uses args.cni alone when CNI_ARGS has no pod keys', () => {
    expect(podIdentity({ args: {} }, { args: { cni: { K8S_POD_NAME: 'p' } } })).toEqual({ name: 'p' });
  });

  it('ignores non-string and empty values in args.cni', () => {
    const id = podIdentity({ args: { K8S_POD_NAME: 'web-0' } }, { args: { cni: { K8S_POD_NAME: 5, K8S_POD_NAMESPACE: '' } } });
    expect(id).toEqual({ name: 'web-0' });
  });

  it('ignores args without a cni object and args outside the cni namespace', () => {
    expect(podIdentity({ args: { K8S_POD_NAME: 'a' } }, { args: { cni: 'x', K8S_POD_NAME: 'b' } })).toEqual({ name: 'a' });
  });

  it('ignores empty CNI_ARGS values', () => {
    expect(podIdentity({ args: { K8S_POD_UID: '' } }, {})).toEqual({});
  });
});

describe('checkVerbAllowed', () => {
  const allowed: [CniVerb, CniVersion][] = [
    ['ADD', '0.3.0'],
    ['DEL', '0.3.1'],
    ['VERSION', '0.3.0'],
    ['CHECK', '0.4.0'],
    ['CHECK', '1.0.0'],
    ['STATUS', '1.1.0'],
    ['GC', '1.1.0'],
  ];
  for (const [verb, version] of allowed) {
    it(`allows ${verb} at cniVersion ${version}`, () => {
      expect(() => checkVerbAllowed(verb, version)).not.toThrow();
    });
  }

  const refused: [CniVerb, CniVersion][] = [
    ['CHECK', '0.3.0'],
    ['CHECK', '0.3.1'],
    ['STATUS', '1.0.0'],
    ['STATUS', '0.4.0'],
    ['GC', '1.0.0'],
    ['GC', '0.3.1'],
  ];
  for (const [verb, version] of refused) {
    it(`refuses ${verb} at cniVersion ${version} with code 1`, () => {
      const e = cniError(() => checkVerbAllowed(verb, version));
      expect(e.code).toBe(1);
      expect(e.message).toContain(`config version does not allow ${verb}`);
    });
  }

});

describe('formatResult', () => {
  it('prints 1.1.0 with every field, cniVersion first', () => {
    const out = formatResult(RESULT, '1.1.0');
    expect(out).toEqual({
      cniVersion: '1.1.0',
      interfaces: [
        { name: 'lxc3f69', mac: '02:00:00:00:00:01' },
        { name: 'eth0', mac: '02:00:00:00:00:02', mtu: 1450, sandbox: '/var/run/netns/cni-1234' },
      ],
      ips: [
        { address: '10.244.1.7/32', gateway: '10.244.1.1', interface: 1 },
        { address: 'fd00:10::7/128', gateway: 'fd00:10::1', interface: 1 },
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1', mtu: 1450, advmss: 1410, priority: 10, table: 254, scope: 0 }, { dst: '::/0' }],
      dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local'] },
    });
    expect(Object.keys(out)).toEqual(['cniVersion', 'interfaces', 'ips', 'routes', 'dns']);
  });

  it('prints 1.1.0 interface socketPath and pciID', () => {
    const out = formatResult({ ...RESULT, interfaces: [{ name: 'net1', socketPath: '/run/vhost.sock', pciID: '0000:00:1f.6' }] }, '1.1.0') as {
      interfaces: unknown[];
    };
    expect(out.interfaces).toEqual([{ name: 'net1', socketPath: '/run/vhost.sock', pciID: '0000:00:1f.6' }]);
  });

  it('prints 1.0.0 without version in ips and without the 1.1.0 route and interface fields', () => {
    const out = formatResult({ ...RESULT, interfaces: [...RESULT.interfaces, { name: 'x', socketPath: '/s', pciID: 'p' }] }, '1.0.0');
    expect(out).toEqual({
      cniVersion: '1.0.0',
      interfaces: [
        { name: 'lxc3f69', mac: '02:00:00:00:00:01' },
        { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/cni-1234' },
        { name: 'x' },
      ],
      ips: [
        { address: '10.244.1.7/32', gateway: '10.244.1.1', interface: 1 },
        { address: 'fd00:10::7/128', gateway: 'fd00:10::1', interface: 1 },
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }, { dst: '::/0' }],
      dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local'] },
    });
  });

  for (const version of ['0.3.0', '0.3.1', '0.4.0']) {
    it(`prints ${version} with "version" "4" or "6" in each ip entry and no 1.1.0 fields`, () => {
      const out = formatResult(RESULT, version);
      expect(out).toEqual({
        cniVersion: version,
        interfaces: [
          { name: 'lxc3f69', mac: '02:00:00:00:00:01' },
          { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/cni-1234' },
        ],
        ips: [
          { version: '4', address: '10.244.1.7/32', gateway: '10.244.1.1', interface: 1 },
          { version: '6', address: 'fd00:10::7/128', gateway: 'fd00:10::1', interface: 1 },
        ],
        routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }, { dst: '::/0' }],
        dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local'] },
      });
      expect(Object.keys(out)[0]).toBe('cniVersion');
    });
  }

  it('omits dns when the result has none or it is empty', () => {
    expect(formatResult({ ...RESULT, dns: undefined }, '1.1.0')).not.toHaveProperty('dns');
    expect(formatResult({ ...RESULT, dns: {} }, '1.1.0')).not.toHaveProperty('dns');
  });

  it('always prints interfaces, ips and routes, even empty', () => {
    expect(formatResult({ cniVersion: '1.1.0', interfaces: [], ips: [], routes: [] }, '1.0.0')).toEqual({
      cniVersion: '1.0.0',
      interfaces: [],
      ips: [],
      routes: [],
    });
  });

  it('leaves out undefined optional fields instead of printing them', () => {
    const out = formatResult({ cniVersion: '1.1.0', interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.1/32' }], routes: [] }, '1.1.0');
    expect(JSON.stringify(out)).toBe('{"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.0.0.1/32"}],"routes":[]}');
  });

  it('does not share arrays with the input', () => {
    const out = formatResult(RESULT, '1.1.0') as { dns: { nameservers: string[] } };
    out.dns.nameservers.push('1.1.1.1');
    expect(RESULT.dns?.nameservers).toEqual(['10.96.0.10']);
  });

  it('refuses an unsupported version with code 1', () => {
    const e = cniError(() => formatResult(RESULT, '0.2.0'));
    expect(e.code).toBe(1);
    expect(e.details).toContain('0.3.0');
  });
});

describe('versionResult', () => {
  it('echoes the requested cniVersion and lists every supported version', () => {
    expect(versionResult('0.4.0')).toEqual({ cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    expect(Object.keys(versionResult('1.1.0'))).toEqual(['cniVersion', 'supportedVersions']);
  });

  it('answers with the current version when none was given', () => {
    expect(versionResult().cniVersion).toBe('1.1.0');
    expect(versionResult('').cniVersion).toBe('1.1.0');
  });

  it('returns a fresh list each time', () => {
    versionResult('1.1.0').supportedVersions.pop();
    expect(versionResult('1.1.0').supportedVersions).toHaveLength(5);
  });
});

describe('parsePrevResult', () => {
  it('round-trips every version formatResult prints', () => {
    for (const v of SUPPORTED_VERSIONS) {
      const parsed = parsePrevResult(JSON.parse(JSON.stringify(formatResult(RESULT, v))), v);
      const expected = formatResult(RESULT, v);
      expect(formatResult(parsed, v)).toEqual(expected);
      expect(parsed.cniVersion).toBe(v);
    }
  });

  it('reads a 0.4.0 result, dropping the ip version field', () => {
    const r = parsePrevResult(
      {
        cniVersion: '0.4.0',
        interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/x' }],
        ips: [{ version: '4', address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 0 }],
        routes: [{ dst: '0.0.0.0/0' }],
        dns: { nameservers: ['10.1.0.1'] },
      },
      '0.4.0',
    );
    expect(r).toEqual({
      cniVersion: '0.4.0',
      interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/x' }],
      ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['10.1.0.1'] },
    });
  });

  it('accepts an empty ip version field, as the reference loopback plugin emits through libcni', () => {
    const r = parsePrevResult(
      { cniVersion: '0.4.0', interfaces: [{ name: 'lo', sandbox: '/var/run/netns/x' }], ips: [{ version: '', address: '127.0.0.1/8', interface: 0 }] },
      '0.4.0',
    );
    expect(r.ips).toEqual([{ address: '127.0.0.1/8', interface: 0 }]);
  });

  it('reads a 1.1.0 result with the 1.1.0 fields', () => {
    const r = parsePrevResult(
      {
        cniVersion: '1.1.0',
        interfaces: [{ name: 'eth0', mtu: 9000, socketPath: '/s', pciID: '0000:01:00.0' }],
        ips: [],
        routes: [{ dst: '10.0.0.0/8', gw: '10.0.0.1', mtu: 1400, advmss: 1360, priority: 5, table: 100, scope: 253 }],
      },
      '1.1.0',
    );
    expect(r.interfaces).toEqual([{ name: 'eth0', mtu: 9000, socketPath: '/s', pciID: '0000:01:00.0' }]);
    expect(r.routes).toEqual([{ dst: '10.0.0.0/8', gw: '10.0.0.1', mtu: 1400, advmss: 1360, priority: 5, table: 100, scope: 253 }]);
  });

  it('reads an abbreviated IPAM-style result with no interfaces or routes', () => {
    expect(parsePrevResult({ cniVersion: '1.0.0', ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1' }] }, '1.0.0')).toEqual({
      cniVersion: '1.0.0',
      interfaces: [],
      ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1' }],
      routes: [],
    });
  });

  it("uses the configuration's cniVersion when prevResult has none", () => {
    expect(parsePrevResult({ ips: [] }, '1.0.0').cniVersion).toBe('1.0.0');
  });

  it('drops empty mac and sandbox strings', () => {
    expect(parsePrevResult({ interfaces: [{ name: 'br0', mac: '', sandbox: '' }] }, '1.0.0').interfaces).toEqual([{ name: 'br0' }]);
  });

  it('refuses a 0.2.0 result with code 1', () => {
    const e = cniError(() => parsePrevResult({ cniVersion: '0.2.0', ip4: { ip: '10.0.0.2/24' } }, '1.1.0'));
    expect(e.code).toBe(1);
  });

  it('rejects a prevResult that is not an object with code 7', () => {
    for (const prev of [null, [], 'x', 1]) expect(cniError(() => parsePrevResult(prev, '1.1.0')).code).toBe(7);
  });

  const malformed: [string, Record<string, unknown>, string][] = [
    ['a non-string cniVersion', { cniVersion: 1 }, 'cniVersion'],
    ['interfaces that are not a list', { interfaces: {} }, 'interfaces'],
    ['an interface that is not an object', { interfaces: ['eth0'] }, 'interfaces[0]'],
    ['an interface without a name', { interfaces: [{ mac: 'x' }] }, 'interfaces[0].name'],
    ['an interface with a negative mtu', { interfaces: [{ name: 'a', mtu: -1 }] }, 'interfaces[0].mtu'],
    ['an ip without an address', { ips: [{}] }, 'ips[0].address'],
    ['an ip address without a prefix length', { ips: [{ address: '10.0.0.1' }] }, 'ips[0].address'],
    ['an ip address with a prefix length too long', { ips: [{ address: '10.0.0.1/33' }] }, 'ips[0].address'],
    ['an ip address that is not an address', { ips: [{ address: 'host/24' }] }, 'ips[0].address'],
    ['an ip version that contradicts the address', { ips: [{ version: '6', address: '10.0.0.1/24' }] }, 'ips[0].version'],
    ['an invalid gateway', { ips: [{ address: '10.0.0.2/24', gateway: 'router' }] }, 'ips[0].gateway'],
    ['an interface index that is not an integer', { ips: [{ address: '10.0.0.2/24', interface: 'eth0' }] }, 'ips[0].interface'],
    ['an interface index out of range', { ips: [{ address: '10.0.0.2/24', interface: 0 }] }, 'ips[0].interface'],
    ['a route without dst', { routes: [{ gw: '10.0.0.1' }] }, 'routes[0].dst'],
    ['a route with an invalid gw', { routes: [{ dst: '0.0.0.0/0', gw: 'x' }] }, 'routes[0].gw'],
    ['a route with a fractional table', { routes: [{ dst: '0.0.0.0/0', table: 1.5 }] }, 'routes[0].table'],
    ['dns that is not an object', { dns: 'x' }, 'prevResult.dns'],
  ];
  for (const [what, prev, field] of malformed) {
    it(`rejects ${what} with code 7 naming ${field}`, () => {
      const e = cniError(() => parsePrevResult(prev, '1.1.0'));
      expect(e.code).toBe(7);
      expect(e.message).toContain(`'${field}'`);
    });
  }
});

describe('names derived from the attachment key', () => {
  // The plugin hashes without node:crypto (it costs ADD tens of ms to load); names must not change across upgrades.
  const keys = ['0123456789abcdef/eth0', 'c/net1', '', 'ünïcödé/eth0', '🙂'.repeat(40), 'x'.repeat(1000)];
  it('sha256Hex equals node:crypto SHA-256 for any UTF-8 text', () => {
    for (const k of keys) expect(sha256Hex(k)).toBe(createHash('sha256').update(k).digest('hex'));
  });
  it('hostVethName is lxc + the first 11 hex characters of SHA-256(containerID/ifname)', () => {
    expect(hostVethName('abc', 'eth0')).toBe(`lxc${createHash('sha256').update('abc/eth0').digest('hex').slice(0, 11)}`);
    expect(hostVethName('abc', 'eth0')).toBe('lxc538f587a236');
  });
});

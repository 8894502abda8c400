/**
 * The load balancer's map sizes (--lb-*-max) against the real kernel: maps
 * loaded at the sizes asked, a full map refused with a clear, counted error
 * (never a silent drop), and pinned maps of other sizes resized on adoption
 * with their entries kept and the attached programs switched to the new
 * maps, or kept whole when they would not fit.
 *
 * The hooks are attached to a cgroup of this test's own under the cgroup v2
 * root: only the client it moves there passes them.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceMapSync } from '../agent/services/sync.ts';
import type { ServiceFrontend } from '../agent/services/table.ts';
import { startServices } from '../agent/services/start.ts';
import { loadServiceLb, removeServiceLb, serviceLbObjectBytes, type LbMapSizes, type ServiceLb } from '../datapath/service-lb-loader.ts';
import { cgroup2Root } from '../datapath/trace-loader.ts';
import { readLinkInfo } from '../datapath/bpf-info.ts';
import { closeFd, objGet } from '../datapath/libbpf.ts';
import { RESIZE_CRASH_ENV, RESIZE_STEPS } from '../datapath/service-lb-resize.ts';

const ID = `h17sz${process.pid}`;
const PIN_DIR = `/sys/fs/bpf/sluice-test-${ID}`;
const TINY: LbMapSizes = { services: 4, backends: 3, revnat: 64, affinity: 16 };

/** A ClusterIP frontend at 10.251.<n>.1:80 with the given local backends. */
function frontend(n: number, ports: number[]): ServiceFrontend {
  return {
    namespace: 't', name: `s${n}`, portName: '', type: 'ClusterIP', address: `10.251.${n}.1`, port: 80, protocol: 'TCP', sessionAffinity: 'None', affinityTimeoutSec: 10_800,
    backends: ports.map((port) => ({ address: '127.0.0.1', port, ready: true, terminating: false })),
  };
}

/** Connects to addr:80 from a process moved into cgroup: what the server said, or the error (async: the server runs in this process). */
async function connectFrom(cgroup: string, addr: string): Promise<string> {
  const script = `
import os, socket, sys
open(os.path.join(sys.argv[1], 'cgroup.procs'), 'w').write(str(os.getpid()))
try:
    s = socket.create_connection((sys.argv[2], 80), timeout=2); print(s.recv(100).decode() + ' via ' + s.getpeername()[0])
except OSError as e:
    print('error ' + str(e))
`;
  const r = await promisify(execFile)('/usr/bin/python3', ['-c', script, cgroup, addr], { encoding: 'utf8', timeout: 10_000 });
  return (r.stdout || r.stderr).trim();
}

/** The program ids the pinned links run. */
function linkPrograms(): number[] {
  return fs.readdirSync(path.join(PIN_DIR, 'links')).sort().map((name) => {
    const fd = objGet(path.join(PIN_DIR, 'links', name), 'link');
    try {
      return readLinkInfo(fd, name).progId;
    } finally {
      closeFd(fd);
    }
  });
}

describe('load balancer map sizes', () => {
  const root = cgroup2Root();
  const cgroup = root ? path.join(root, `sluice-test-${ID}`) : '';
  let server: net.Server;
  let port = 0;
  const open: ServiceLb[] = [];
  const load = (sizes: LbMapSizes) => {
    const lb = loadServiceLb({ pinDir: PIN_DIR, objectBytes: serviceLbObjectBytes(), cgroupRoot: cgroup, sizes });
    open.push(lb);
    return lb;
  };

  beforeAll(async () => {
    if (!root) throw new Error('no cgroup v2 hierarchy mounted');
    fs.mkdirSync(cgroup, { recursive: true });
    server = net.createServer((c) => c.end('backend'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    for (const lb of open) lb.close();
    removeServiceLb(PIN_DIR);
    try {
      fs.rmdirSync(cgroup);
    } catch {
      // already gone, or never made
    }
    await new Promise((resolve) => server?.close(resolve));
  });

  it('loads the maps at the sizes asked, and a full map refuses with an error that says which and what to raise, counted', async () => {
    const lb = load(TINY);
    expect(lb.sizes).toEqual({ lb_services: 4, lb_backends: 3, lb_revnat: 64, lb_backend_flows: 3, lb_affinity: 16 });
    const sync = new ServiceMapSync(lb.maps, { maxEntries: { lb_services: lb.sizes.lb_services, lb_backends: lb.sizes.lb_backend_flows } });
    // Two frontends with one backend each fill lb_services (2 × (head + slot)); the third does not fit.
    const stats = sync.apply([frontend(1, [port]), frontend(2, [port + 1]), frontend(3, [port + 2])]);
    expect(stats.full).toEqual({ lb_services: 1, lb_backends: 1 });
    expect(stats.failed).toContain('frontend 10.251.3.1|80|TCP: map lb_services is full (4 entries): not served; raise --lb-services-max');
    expect(stats.failed).toContain('backend 127.0.0.1:' + (port + 2) + ': map lb_backends is full (3 entries): not served; raise --lb-backends-max');
    // The frontends that fit are served.
    expect(await connectFrom(cgroup, '10.251.1.1')).toBe('backend via 10.251.1.1');
  });

  it('shows the fill and the refusals in the status map rows', async () => {
    // Three Services of the local datastore on one backend: the third frontend does not fit.
    const service = (n: number) => ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 't', name: `s${n}` }, spec: { clusterIP: `10.251.${n}.1`, selector: { app: 'b' }, ports: [{ port: 80, targetPort: port }] } });
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 't', name: 'b', labels: { app: 'b' } }, status: { phase: 'Running', podIP: '127.0.0.1' } };
    const logs: string[] = [];
    const services = startServices({
      enabled: true, pinDir: PIN_DIR, objectBytes: serviceLbObjectBytes, cgroupRoot: cgroup, sizes: TINY, log: (m) => logs.push(m),
      datastore: { refresh: () => false, objects: () => ({ pods: [pod], namespaces: [], networkPolicies: [], nodes: [], services: [service(1), service(2), service(3)] }), describe: () => 'test' },
      load: (o) => load(o.sizes!),
    });
    // Each sync tries the third frontend again (its slot and its count): each time counted.
    services.sync();
    const fill = await services.mapFill();
    expect(fill.map((m) => [m.name, m.entries, m.maxEntries, m.refused])).toEqual([['lb_services', 4, 4, 4], ['lb_backends', 1, 3, undefined], ['lb_revnat', expect.any(Number), 64, undefined], ['lb_affinity', 0, 16, undefined]]);
    expect(services.report().syncError).toContain('frontend 10.251.3.1|80|TCP: map lb_services is full (4 entries): not served; raise --lb-services-max');
    expect(logs.some((l) => l.includes('map lb_services is full'))).toBe(true);
    // GET /v1/services (sluice service list) says which frontends are not served.
    expect(services.report().frontends.map((f) => [f.address, f.served])).toEqual([['10.251.1.1', true], ['10.251.2.1', true], ['10.251.3.1', false]]);
    services.close();
  });

  it('resizes pinned maps of other sizes on adoption: entries kept, links switched to programs on the new maps, Services served throughout', async () => {
    const small = load(TINY);
    const sync = new ServiceMapSync(small.maps, { maxEntries: { lb_services: 4, lb_backends: 3 } });
    expect(sync.apply([frontend(1, [port]), frontend(2, [port])]).failed).toEqual([]);
    const before = linkPrograms();
    const big = load({ services: 1024, backends: 256, revnat: 128, affinity: 32 });
    expect(big.adopted).toBe(true);
    expect(big.resizeRefused).toBeNull();
    expect(big.resized).toEqual(['lb_services 4 → 1024', 'lb_backends 3 → 256', 'lb_revnat 64 → 128', 'lb_backend_flows 3 → 256', 'lb_affinity 16 → 32']);
    expect(big.sizes).toMatchObject({ lb_services: 1024, lb_backends: 256 });
    expect(big.maps.lb_services.keys()).toHaveLength(4);
    const after = linkPrograms();
    expect(after).toHaveLength(8);
    expect(after.some((id, i) => id === before[i])).toBe(false);
    // What was written before the resize is served by the new programs; the old pins are gone.
    expect(await connectFrom(cgroup, '10.251.2.1')).toBe('backend via 10.251.2.1');
    expect(fs.readdirSync(PIN_DIR).sort()).toEqual(['links', 'maps', 'progs']);
    // And the new size takes what the old could not.
    const more = new ServiceMapSync(big.maps, { maxEntries: { lb_services: 1024, lb_backends: 256 } });
    expect(more.apply([frontend(1, [port]), frontend(2, [port]), frontend(3, [port])]).failed).toEqual([]);
    expect(await connectFrom(cgroup, '10.251.3.1')).toBe('backend via 10.251.3.1');
  });

  it('keeps the pinned maps whole when the new size would not hold their entries', async () => {
    const shrunk = load({ services: 2, backends: 256, revnat: 128, affinity: 32 });
    expect(shrunk.resizeRefused).toMatch(/lb_services: 6 entries do not fit in the new map of 2/);
    expect(shrunk.sizes.lb_services).toBe(1024);
    expect(shrunk.resized).toEqual([]);
    expect(await connectFrom(cgroup, '10.251.3.1')).toBe('backend via 10.251.3.1');
    expect(fs.readdirSync(PIN_DIR).sort()).toEqual(['links', 'maps', 'progs']);
  });

  it('finishes (or discards) a resize a crash interrupted at any step, on the next load; Services served at every point', async () => {
    const base = load({ services: 1024, backends: 256, revnat: 128, affinity: 32 });
    expect(new ServiceMapSync(base.maps, { maxEntries: { lb_services: 1024, lb_backends: 256 } }).apply([frontend(1, [port]), frontend(2, [port]), frontend(3, [port])]).failed).toEqual([]);
    for (const [i, step] of RESIZE_STEPS.entries()) {
      const sizes = { services: 2048 + 64 * i, backends: 256, revnat: 128, affinity: 32 };
      process.env[RESIZE_CRASH_ENV] = step;
      try {
        expect(() => load(sizes), step).toThrow(`injected crash after resize step '${step}'`);
      } finally {
        delete process.env[RESIZE_CRASH_ENV];
      }
      expect(await connectFrom(cgroup, '10.251.2.1'), step).toBe('backend via 10.251.2.1');
      const lb = load(sizes);
      expect(lb.sizes.lb_services, step).toBe(sizes.services);
      expect(lb.maps.lb_services.keys(), step).toHaveLength(6);
      expect(fs.readdirSync(PIN_DIR).sort(), step).toEqual(['links', 'maps', 'progs']);
      expect(await connectFrom(cgroup, '10.251.3.1'), step).toBe('backend via 10.251.3.1');
    }
  });
});

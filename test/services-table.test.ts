/**
 * The load balancer's table from Services and their endpoints (agent/services/table.ts),
 * and what `sluice local apply` allocates for a Service (cli/local/services.ts). Pure.
 */
import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../agent/datastore/local.ts';
import { serviceTable, withNodePorts } from '../agent/services/table.ts';
import { allocateService, checkServiceSpec, holdService, serviceCidrsOf, takenBy } from '../cli/local/services.ts';
import type { ClusterConfig } from '../cli/local/cluster.ts';

function service(name: string, spec: Record<string, unknown>, namespace = 'x'): KubeObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { namespace, name }, spec };
}

function pod(name: string, labels: Record<string, string>, ips: string[], ports: { name?: string; containerPort: number; protocol?: string }[] = [], namespace = 'x'): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace, name, labels },
    spec: { containers: [{ ports }] },
    status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
  };
}

const web = service('web', {
  type: 'ClusterIP',
  clusterIP: '10.96.0.10',
  clusterIPs: ['10.96.0.10', 'fd00:96::10'],
  selector: { app: 'web' },
  ports: [
    { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' },
    { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' },
  ],
});

describe('service table', () => {
  it('derives backends from the pods the selector matches in the Service namespace; a named targetPort resolves per pod', () => {
    const pods = [
      pod('a', { app: 'web' }, ['10.244.0.2', 'fd00:244::2'], [{ name: 'http', containerPort: 8080 }]),
      pod('b', { app: 'web' }, ['10.244.0.3'], [{ name: 'http', containerPort: 9090 }]),
      pod('no-port', { app: 'web' }, ['10.244.0.4']), // has no port named http: no backend of port 80
      pod('other', { app: 'db' }, ['10.244.0.5'], [{ name: 'http', containerPort: 8080 }]),
      pod('elsewhere', { app: 'web' }, ['10.244.0.6'], [{ name: 'http', containerPort: 8080 }], 'y'),
      pod('pending', { app: 'web' }, [], [{ name: 'http', containerPort: 8080 }]),
    ];
    const table = serviceTable({ services: [web], pods });
    const at = (address: string, port: number) => table.find((f) => f.address === address && f.port === port)!;
    expect(table.map((f) => `${f.address}:${f.port}/${f.protocol}`)).toEqual(['10.96.0.10:53/UDP', '10.96.0.10:80/TCP', 'fd00:96::10:53/UDP', 'fd00:96::10:80/TCP']);
    expect(at('10.96.0.10', 80).backends).toEqual([
      { address: '10.244.0.2', port: 8080, ready: true, terminating: false, pod: 'x/a' },
      { address: '10.244.0.3', port: 9090, ready: true, terminating: false, pod: 'x/b' },
    ]);
    expect(at('10.96.0.10', 53).backends.map((b) => `${b.address}:${b.port}`)).toEqual(['10.244.0.2:5353', '10.244.0.3:5353', '10.244.0.4:5353']);
    // Each family's frontend gets the backends of its own family.
    expect(at('fd00:96::10', 80).backends.map((b) => b.address)).toEqual(['fd00:244::2']);
    expect(at('10.96.0.10', 80)).toMatchObject({ namespace: 'x', name: 'web', portName: 'http', type: 'ClusterIP', sessionAffinity: 'None' });
  });

  it('gives a Service without a selector, or without matching pods, a frontend with no backends (it must refuse, not vanish)', () => {
    const table = serviceTable({ services: [service('empty', { clusterIP: '10.96.0.11', ports: [{ port: 80 }] })], pods: [pod('a', { app: 'web' }, ['10.244.0.2'])] });
    expect(table).toHaveLength(1);
    expect(table[0]).toMatchObject({ address: '10.96.0.11', port: 80, protocol: 'TCP', backends: [] });
  });

  it('skips headless, unallocated and ExternalName Services; keeps NodePort with its node port and ClientIP affinity', () => {
    const table = serviceTable({
      services: [
        service('headless', { clusterIP: 'None', ports: [{ port: 80 }] }),
        service('unallocated', { ports: [{ port: 80 }] }),
        service('name', { type: 'ExternalName', externalName: 'example.org', ports: [{ port: 80 }] }),
        service('np', { type: 'NodePort', clusterIP: '10.96.0.13', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, ports: [{ port: 80, nodePort: 30080 }] }),
      ],
      pods: [],
    });
    expect(table.map((f) => f.name)).toEqual(['np']);
    expect(table[0]).toMatchObject({ type: 'NodePort', nodePort: 30080, sessionAffinity: 'ClientIP', affinityTimeoutSec: 60 });
    expect(serviceTable({ services: [service('d', { clusterIP: '10.96.0.14', sessionAffinity: 'ClientIP', ports: [{ port: 1 }] })] })[0]!.affinityTimeoutSec).toBe(10_800);
  });

  it('serves a LoadBalancer as kube-proxy does: its ClusterIP and its node port, never its external or ingress addresses', () => {
    const lb = service('lb', {
      type: 'LoadBalancer',
      clusterIP: '10.96.0.12',
      externalIPs: ['192.0.2.1'],
      selector: { app: 'web' },
      ports: [{ port: 80, targetPort: 8080, nodePort: 30081 }],
    });
    lb.status = { loadBalancer: { ingress: [{ ip: '192.0.2.2' }] } };
    const full = withNodePorts(serviceTable({ services: [lb], pods: [pod('a', { app: 'web' }, ['10.244.0.2'])] }), ['192.168.1.10']);
    expect(full.map((f) => `${f.address}:${f.port} ${f.type} ${f.backends.map((b) => `${b.address}:${b.port}`).join()}`)).toEqual([
      '10.96.0.12:80 LoadBalancer 10.244.0.2:8080',
      '192.168.1.10:30081 LoadBalancer 10.244.0.2:8080',
    ]);
  });

  it('leaves alone a Service labelled for another proxy (service-proxy-name) or headless, as kube-proxy does', () => {
    const labelled = (name: string, labels: Record<string, string>) => {
      const s = service(name, { clusterIP: '10.96.0.30', ports: [{ port: 80 }] });
      s.metadata.labels = labels;
      return s;
    };
    const table = serviceTable({
      services: [
        labelled('other-proxy', { 'service.kubernetes.io/service-proxy-name': 'foo-bar' }),
        labelled('headless-label', { 'service.kubernetes.io/headless': '' }),
        labelled('ours', { app: 'web' }),
      ],
      pods: [],
    });
    expect(table.map((f) => f.name)).toEqual(['ours']);
  });

  it('skips a malformed Service (a hand-written file) or port, and serves the others', () => {
    const table = serviceTable({
      services: [
        service('bad', { clusterIP: '10.96.0.20', ports: { port: 80 } }),
        service('bad-port', { clusterIP: '10.96.0.21', ports: [{ port: 'eighty' }, { port: 81, protocol: 'ICMP' }, { port: 82 }] }),
        service('good', { clusterIP: '10.96.0.22', ports: [{ port: 80 }] }),
      ],
      pods: [],
    });
    expect(table.map((f) => `${f.name} ${f.port}`)).toEqual(['bad-port 82', 'good 80']);
  });

  it('serves a NodePort on every node address of its family, with the backends of its ClusterIP', () => {
    const table = serviceTable({
      services: [service('np', { type: 'NodePort', clusterIP: '10.96.0.13', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }] })],
      pods: [pod('a', { app: 'web' }, ['10.244.0.2'])],
    });
    const full = withNodePorts(table, ['192.168.1.10', 'fd00::10', '192.168.1.10']);
    expect(full.map((f) => `${f.address}:${f.port} ${f.type} ${f.backends.map((b) => `${b.address}:${b.port}`).join()}`)).toEqual([
      '10.96.0.13:80 NodePort 10.244.0.2:8080',
      '192.168.1.10:30080 NodePort 10.244.0.2:8080',
    ]);
    expect(withNodePorts(serviceTable({ services: [web], pods: [] }), ['192.168.1.10'])).toHaveLength(4);
  });

  it('reads v1 Endpoints (notReadyAddresses never ready) and prefers EndpointSlices (terminating never ready) over them and over pods', () => {
    const endpoints: KubeObject = {
      apiVersion: 'v1', kind: 'Endpoints', metadata: { namespace: 'x', name: 'web' },
      ...{ subsets: [{ addresses: [{ ip: '10.244.1.2', targetRef: { kind: 'Pod', namespace: 'x', name: 'p' } }], notReadyAddresses: [{ ip: '10.244.1.3' }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] }] },
    } as KubeObject;
    const viaEndpoints = serviceTable({ services: [web], endpoints: [endpoints], pods: [pod('a', { app: 'web' }, ['10.244.0.2'], [{ name: 'http', containerPort: 1 }])] });
    expect(viaEndpoints.find((f) => f.port === 80 && f.address === '10.96.0.10')!.backends).toEqual([
      { address: '10.244.1.2', port: 8080, ready: true, terminating: false, pod: 'x/p' },
      { address: '10.244.1.3', port: 8080, ready: false, terminating: false },
    ]);
    const slice = (name: string, endpointsList: unknown[]): KubeObject => ({
      apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice', metadata: { namespace: 'x', name, labels: { 'kubernetes.io/service-name': 'web' } },
      ...{ addressType: 'IPv4', endpoints: endpointsList, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] },
    } as KubeObject);
    const viaSlices = serviceTable({
      services: [web],
      endpoints: [endpoints],
      endpointSlices: [slice('web-1', [{ addresses: ['10.244.2.2'] }, { addresses: ['10.244.2.3'], conditions: { ready: false } }]), slice('web-2', [{ addresses: ['10.244.2.4'], conditions: { ready: true, terminating: true } }])],
    });
    expect(viaSlices.find((f) => f.port === 80 && f.address === '10.96.0.10')!.backends.map((b) => [b.address, b.ready, b.terminating])).toEqual([
      ['10.244.2.2', true, false],
      ['10.244.2.3', false, false],
      ['10.244.2.4', false, true],
    ]);
  });
});

describe('local Services', () => {
  const obj = (spec: Record<string, unknown>, name = 'web') => service(name, spec);

  it('keeps a given clusterIP, else takes the lowest free address of the first Service CIDR; refuses one outside it or taken', () => {
    const cidrs = ['10.96.0.0/12'];
    const a = allocateService(obj({ clusterIP: '10.96.0.10', ports: [{ port: 80 }] }), null, [], cidrs);
    expect(a.spec).toMatchObject({ type: 'ClusterIP', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], sessionAffinity: 'None', ports: [{ port: 80, targetPort: 80, protocol: 'TCP' }] });
    const b = allocateService(obj({ ports: [{ port: 80 }] }, 'b'), null, [service('z', { clusterIP: '10.96.0.1' })], cidrs);
    expect(b.spec!.clusterIP).toBe('10.96.0.2');
    // Applying again keeps the address it has.
    expect(allocateService(obj({ ports: [{ port: 81 }] }, 'b'), b, [], cidrs).spec!.clusterIP).toBe('10.96.0.2');
    expect(() => allocateService(obj({ clusterIP: '10.97.0.1', ports: [{ port: 80 }] }), b, [], cidrs)).toThrow(/cannot be changed/);
    expect(() => allocateService(obj({ clusterIP: '192.168.0.1', ports: [{ port: 80 }] }), null, [], cidrs)).toThrow(/not in the service CIDR/);
    expect(() => allocateService(obj({ clusterIP: '10.96.0.10', ports: [{ port: 80 }] }, 'c'), null, [a], cidrs)).toThrow(/already allocated/);
    expect(() => allocateService(obj({ ports: [{ port: 80 }] }), null, [service('a', { clusterIP: '10.96.0.1' }), service('b', { clusterIP: '10.96.0.2' })], ['10.96.0.0/30'])).toThrow(/full/);
  });

  it('allocates NodePorts in 30000-32767, keeps them across applies, refuses a taken one', () => {
    const np = allocateService(obj({ type: 'NodePort', ports: [{ port: 80 }] }), null, [], ['10.96.0.0/12']);
    expect((np.spec!.ports as { nodePort: number }[])[0]!.nodePort).toBe(30000);
    const again = allocateService(obj({ type: 'NodePort', ports: [{ port: 80 }] }), np, [], ['10.96.0.0/12']);
    expect((again.spec!.ports as { nodePort: number }[])[0]!.nodePort).toBe(30000);
    expect(() => allocateService(obj({ type: 'NodePort', ports: [{ port: 80, nodePort: 30000 }] }, 'b'), null, [np], ['10.96.0.0/12'])).toThrow(/nodePort 30000 is already allocated/);
  });

  it('with one record of what is taken for a whole apply: each Service the lowest free address, none twice, a freed one reused', () => {
    const cidrs = ['10.96.0.0/16'];
    const taken = takenBy([service('z', { clusterIP: '10.96.0.3' })]);
    const made = Array.from({ length: 3000 }, (_, i) => {
      const s = allocateService(obj({ ports: [{ port: 80 }] }, `s${i}`), null, taken, cidrs);
      holdService(taken, s, true);
      return s.spec!.clusterIP as string;
    });
    expect(new Set(made).size).toBe(3000);
    expect(made.slice(0, 4)).toEqual(['10.96.0.1', '10.96.0.2', '10.96.0.4', '10.96.0.5']);
    expect(made.at(-1)).toBe('10.96.11.185');
    // Deleting (or re-applying) one frees its address for the next.
    holdService(taken, service('s1', { clusterIP: '10.96.0.2' }), false);
    expect(allocateService(obj({ ports: [{ port: 80 }] }, 'new'), null, taken, cidrs).spec!.clusterIP).toBe('10.96.0.2');
  });

  it('rejects what the API server rejects', () => {
    expect(() => checkServiceSpec('s', { ports: [] })).toThrow(/at least one port/);
    expect(() => checkServiceSpec('s', { type: 'LoadBalancer', ports: [{ port: 80 }] })).toThrow(/not supported/);
    expect(() => checkServiceSpec('s', { ports: [{ port: 80 }, { port: 81 }] })).toThrow(/needs a name/);
    expect(() => checkServiceSpec('s', { ports: [{ port: 70000 }] })).toThrow(/1 to 65535/);
    expect(() => checkServiceSpec('s', { ports: [{ port: 80, targetPort: 'Bad_Name' }] })).toThrow(/targetPort/);
    expect(() => checkServiceSpec('s', { ports: [{ port: 80, nodePort: 30001 }] })).toThrow(/needs type NodePort/);
    expect(() => checkServiceSpec('s', { sessionAffinity: 'Sticky', ports: [{ port: 80 }] })).toThrow(/sessionAffinity/);
    expect(() => checkServiceSpec('s', { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80 }] })).toThrow(/duplicate/);
    expect(() => checkServiceSpec('s', { ports: [{ name: 'a', port: 80, targetPort: 'http' }, { name: 'b', port: 53, protocol: 'UDP' }] })).not.toThrow();
  });

  it('reads the Service CIDRs the agents were given', () => {
    const config = (agentArgs: string[]) => ({ agentArgs }) as unknown as ClusterConfig;
    expect(serviceCidrsOf(config([]))).toEqual(['10.96.0.0/12']);
    expect(serviceCidrsOf(config(['--service-cidr=10.100.0.0/16', '--service-cidr', 'fd00:96::/108']))).toEqual(['10.100.0.0/16', 'fd00:96::/108']);
  });
});

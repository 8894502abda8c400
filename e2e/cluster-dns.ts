/**
 * The e2e cluster's DNS: what CoreDNS's kubernetes plugin answers, for the
 * names the upstream Services specs resolve. The e2e cluster is built offline
 * from Debian's Kubernetes source package, which has no DNS add-on image; the
 * specs reach Services by name (`nc <service> <port>` in an exec pod), so
 * without this they would test the resolver, not Sluice. Test infrastructure
 * only: Sluice itself neither needs nor ships it.
 *
 * Answers, from Services and Endpoints read every half second through the API:
 *   <svc>.<ns>.svc.<domain>            A/AAAA: the ClusterIPs, or a headless Service's ready endpoints;
 *                                      CNAME for an ExternalName (followed when it is a cluster name)
 *   <hostname>.<svc>.<ns>.svc.<domain> A/AAAA: the endpoint with that hostname
 *   a-b-c-d.<ns>.pod.<domain>          A: a.b.c.d
 * Anything else is NXDOMAIN (nothing upstream: the cluster is offline). UDP and TCP on --listen:53.
 *
 * usage: node e2e/cluster-dns.ts --listen ADDRESS [--domain cluster.local]
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { CoreV1Api, KubeConfig, type V1Endpoints, type V1Service } from '@kubernetes/client-node';
import { decode, encode, type Answer, type Packet } from 'dns-packet';

const TTL = 5;

interface View {
  services: Map<string, V1Service>; // "ns/name"
  endpoints: Map<string, V1Endpoints>;
}

function answersFor(name: string, type: string, view: View, domain: string, depth = 0): Answer[] | null {
  const svcSuffix = `.svc.${domain}`;
  const podSuffix = `.pod.${domain}`;
  const family = type === 'AAAA' ? 6 : 4;
  const address = (ip: string): Answer => ({ type: family === 6 ? 'AAAA' : 'A', name, ttl: TTL, data: ip });
  if (name.endsWith(podSuffix)) {
    const [dashed, ns, ...rest] = name.slice(0, -podSuffix.length).split('.');
    if (!dashed || !ns || rest.length > 0) return null;
    const ip = dashed.replaceAll('-', '.');
    return net.isIPv4(ip) ? (family === 4 ? [address(ip)] : []) : null;
  }
  if (!name.endsWith(svcSuffix)) return null;
  const labels = name.slice(0, -svcSuffix.length).split('.');
  const [host, svcName, ns] = labels.length === 3 ? labels : [undefined, labels[0], labels[1]];
  if (!svcName || !ns || labels.length > 3) return null;
  const svc = view.services.get(`${ns}/${svcName}`);
  if (!svc) return null;
  const spec = svc.spec ?? {};
  if (spec.type === 'ExternalName' && spec.externalName && !host) {
    const target = spec.externalName.toLowerCase().replace(/\.$/, '');
    const cname: Answer = { type: 'CNAME', name, ttl: TTL, data: target };
    if (type === 'CNAME' || depth > 4) return [cname];
    return [cname, ...(answersFor(target, type, view, domain, depth + 1) ?? [])];
  }
  const headless = spec.clusterIP === 'None';
  if (!headless && !host) {
    const ips = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
    return ips.filter((ip) => net.isIP(ip) === family).map(address);
  }
  const ready = (view.endpoints.get(`${ns}/${svcName}`)?.subsets ?? []).flatMap((s) => [
    ...(s.addresses ?? []),
    ...(spec.publishNotReadyAddresses ? (s.notReadyAddresses ?? []) : []),
  ]);
  const chosen = host ? ready.filter((a) => a.hostname?.toLowerCase() === host) : headless ? ready : [];
  if (host && chosen.length === 0) return null;
  return chosen.map((a) => a.ip).filter((ip) => net.isIP(ip) === family).map(address);
}

function reply(query: Packet, view: View, domain: string): Buffer {
  const q = query.questions?.[0];
  const base = { id: query.id, type: 'response' as const, flags: (query.flags ?? 0) | 0x0400 /* AA */, questions: query.questions ?? [] };
  if (!q) return encode({ ...base, flags: base.flags | 1 /* FORMERR */ });
  const answers = ['A', 'AAAA', 'CNAME'].includes(q.type) ? answersFor(q.name.toLowerCase().replace(/\.$/, ''), q.type, view, domain) : [];
  if (answers === null) return encode({ ...base, flags: base.flags | 3 /* NXDOMAIN */ });
  return encode({ ...base, answers });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { listen: { type: 'string' }, domain: { type: 'string', default: 'cluster.local' } } });
  const listen = values.listen;
  if (!listen || net.isIP(listen) === 0) throw new Error('usage: cluster-dns.ts --listen ADDRESS [--domain cluster.local]');
  const domain = values.domain!.toLowerCase();
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const api = kc.makeApiClient(CoreV1Api);
  const view: View = { services: new Map(), endpoints: new Map() };
  const key = (o: { metadata?: { namespace?: string; name?: string } }) => `${o.metadata?.namespace}/${o.metadata?.name}`;
  const refresh = async () => {
    try {
      const [services, endpoints] = await Promise.all([api.listServiceForAllNamespaces(), api.listEndpointsForAllNamespaces()]);
      view.services = new Map(services.items.map((s) => [key(s), s]));
      view.endpoints = new Map(endpoints.items.map((e) => [key(e), e]));
    } catch (err) {
      console.error(`cluster-dns: list failed: ${(err as Error).message}`);
    }
    setTimeout(refresh, 500);
  };
  await refresh();

  const answer = (msg: Buffer): Buffer | null => {
    try {
      return reply(decode(msg), view, domain);
    } catch {
      return null; // not a DNS message: no answer, as a server would
    }
  };
  const udp = dgram.createSocket(net.isIPv6(listen) ? 'udp6' : 'udp4');
  udp.on('message', (msg, rinfo) => {
    const out = answer(msg);
    if (out) udp.send(out, rinfo.port, rinfo.address);
  });
  udp.bind(53, listen);
  net
    .createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const out = answer(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
          if (out) sock.write(Buffer.concat([Buffer.from([out.length >> 8, out.length & 0xff]), out]));
        }
      });
      sock.on('error', () => sock.destroy());
    })
    .listen(53, listen);
  console.log(`cluster-dns: serving ${domain} on ${listen}:53`);
}

await main();

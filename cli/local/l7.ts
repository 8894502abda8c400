/**
 * DNS and HTTP servers and clients for pods of the local cluster (`sluice
 * local serve --protocol dns|http`, `sluice local ask dns|http`): traffic
 * the flow records can name, in the demo and by hand, without any image.
 *
 * The DNS server answers A queries for the names it is given and NXDOMAIN
 * for any other; the HTTP server answers 200, or 500 on paths under /fail.
 */
import dgram from 'node:dgram';
import http from 'node:http';
import { decode, encode, RECURSION_DESIRED, type Answer } from 'dns-packet';
import { rcodeName } from '../../agent/flows/dns.ts';

/** A DNS server on UDP port (inside a pod): names → IPv4 addresses; prints "ready" once bound. */
export async function serveDns(port: number, names: Record<string, string>): Promise<void> {
  const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  sock.on('message', (msg, rinfo) => {
    let query;
    try {
      query = decode(msg);
    } catch {
      return; // not DNS: no answer, as a real server
    }
    const question = query.questions?.[0];
    const address = question && question.type === 'A' ? names[question.name.toLowerCase()] : undefined;
    const answers: Answer[] = address && question ? [{ type: 'A', name: question.name, ttl: 30, data: address }] : [];
    const known = question !== undefined && Object.hasOwn(names, question.name.toLowerCase());
    const reply = encode({
      id: query.id,
      type: 'response',
      flags: RECURSION_DESIRED | (known ? 0 : 3), // rcode NXDOMAIN for names it does not have
      questions: query.questions,
      answers,
    });
    sock.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => sock.bind(port, '::', resolve));
  process.stdout.write('ready\n');
  await new Promise((resolve) => sock.on('close', resolve));
}

/** An HTTP/1.1 server (inside a pod): 500 under /fail, 200 elsewhere; prints "ready" once listening. */
export async function serveHttp(port: number): Promise<void> {
  const server = http.createServer((req, res) => {
    const failing = (req.url ?? '/').startsWith('/fail');
    res.writeHead(failing ? 500 : 200, { 'content-type': 'text/plain' });
    res.end(failing ? 'failed on purpose\n' : 'ok\n');
  });
  await new Promise<void>((resolve) => server.listen(port, '::', resolve));
  process.stdout.write('ready\n');
  await new Promise((resolve) => server.on('close', resolve));
}

/** Asks server for name's A record; resolves with "NOERROR 10.0.0.1" or "NXDOMAIN", rejects on timeout. */
export function askDns(server: string, name: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(server.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => (sock.close(), reject(new Error(`no DNS answer from ${server} within ${timeoutMs} ms`))), timeoutMs);
    sock.on('message', (msg) => {
      clearTimeout(timer);
      sock.close();
      const reply = decode(msg);
      const a = reply.answers?.find((x) => x.type === 'A');
      resolve(`${rcodeName((reply.flags ?? 0) & 0xf)}${a && a.type === 'A' ? ` ${a.data}` : ''}`);
    });
    sock.send(encode({ id: Math.floor(Math.random() * 65536), type: 'query', flags: RECURSION_DESIRED, questions: [{ type: 'A', name }] }), 53, server);
  });
}

/** GETs url on a connection of its own; resolves with the status. */
export function askHttp(url: string, timeoutMs = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`no HTTP answer from ${url} within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

// L7 summaries from the payload bytes the datapath hands up (the first 256 bytes of a UDP port-53
// payload, or of a TCP segment that begins an HTTP/1.x message): DNS and HTTP parsing on real wire
// bytes (dns-packet's encoder, HTTP text), cut anywhere, and garbage.
import { encode, type Answer, type Packet } from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { parseDns } from '../agent/flows/dns.ts';
import { parseHttp } from '../agent/flows/http.ts';
import { DEFAULT_MAX_PENDING, L7Tracker, type L7Packet } from '../agent/flows/l7-tracker.ts';

/** The datapath's capture: the first 256 bytes of the payload. */
const CAPTURE_BYTES = 256;

/** A deterministic byte source, so a failing garbage case can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s >>> 24;
  };
}

function randomBytes(next: () => number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = next();
  return b;
}

const RD = 1 << 8;
const RA = 1 << 7;

function query(name: string, type: string, id = 0x1234, extra: Partial<Packet> = {}): Buffer {
  return encode({ type: 'query', id, flags: RD, questions: [{ type: type as 'A', name }], ...extra });
}

function response(name: string, type: string, rcode: number, answers: Answer[], extra: Partial<Packet> = {}, id = 0x1234): Buffer {
  // dns-packet's flags carry the RCODE in their low 4 bits.
  return encode({ type: 'response', id, flags: RD | RA | rcode, questions: [{ type: type as 'A', name }], answers, ...extra });
}

/** Appends A records whose names point at the question's (0xc00c), as servers compress them. */
function withCompressedA(message: Buffer, addresses: string[]): Buffer {
  const records = addresses.map((ip) => {
    const r = Buffer.alloc(16);
    r.writeUInt16BE(0xc00c, 0);
    r.writeUInt16BE(1, 2); // A
    r.writeUInt16BE(1, 4); // IN
    r.writeUInt32BE(30, 6);
    r.writeUInt16BE(4, 10);
    ip.split('.').forEach((octet, i) => (r[12 + i] = Number(octet)));
    return r;
  });
  const out = Buffer.concat([message, ...records]);
  out.writeUInt16BE(message.readUInt16BE(6) + addresses.length, 6);
  return out;
}

const a = (name: string, data: string): Answer => ({ type: 'A', name, ttl: 30, data });
const aaaa = (name: string, data: string): Answer => ({ type: 'AAAA', name, ttl: 30, data });
const cname = (name: string, data: string): Answer => ({ type: 'CNAME', name, ttl: 30, data });
const soa: Answer = {
  type: 'SOA',
  name: 'cluster.local',
  ttl: 5,
  data: { mname: 'ns.dns.cluster.local', rname: 'hostmaster.cluster.local', serial: 1, refresh: 7200, retry: 1800, expire: 86400, minimum: 5 },
};
const opt = (extendedRcode = 0): Answer => ({ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode, ednsVersion: 0, flags: 0, flag_do: false, options: [] });

describe('DNS messages', () => {
  it('a query gives its id, first question name and type, and no rcode or answers', () => {
    expect(parseDns(query('kubernetes.default.svc.cluster.local', 'A', 0xbeef))).toEqual({
      kind: 'request',
      dns: { id: 0xbeef, query: 'kubernetes.default.svc.cluster.local', qtype: 'A' },
    });
    expect(parseDns(query('example.com', 'AAAA', 7, { additionals: [opt()] }))).toEqual({ kind: 'request', dns: { id: 7, query: 'example.com', qtype: 'AAAA' } });
  });

  it('a response gives its rcode and the A, AAAA and CNAME data it answers with', () => {
    expect(parseDns(response('web.shop.svc.cluster.local', 'A', 0, [a('web.shop.svc.cluster.local', '10.96.3.7'), a('web.shop.svc.cluster.local', '10.96.3.8')]))).toEqual({
      kind: 'response',
      dns: { id: 0x1234, query: 'web.shop.svc.cluster.local', qtype: 'A', rcode: 'NOERROR', answers: ['10.96.3.7', '10.96.3.8'] },
    });
    expect(parseDns(response('example.com', 'AAAA', 0, [aaaa('example.com', '2001:db8::1')], { additionals: [opt()] }))?.dns.answers).toEqual(['2001:db8::1']);
    const chain = parseDns(response('www.example.com', 'A', 0, [cname('www.example.com', 'edge.cdn.example.net'), a('edge.cdn.example.net', '192.0.2.10')]));
    expect(chain?.dns.answers).toEqual(['edge.cdn.example.net', '192.0.2.10']);
  });

  it('names the rcodes as DNS does, the EDNS extended ones included', () => {
    const rcodeOf = (rcode: number, extra: Partial<Packet> = {}) => parseDns(response('nope.example', 'A', rcode, [], extra))?.dns.rcode;
    expect(rcodeOf(3, { authorities: [soa] })).toBe('NXDOMAIN');
    expect(rcodeOf(2)).toBe('SERVFAIL');
    expect(rcodeOf(5)).toBe('REFUSED');
    expect(rcodeOf(1)).toBe('FORMERR');
    expect(rcodeOf(12)).toBe('RCODE12');
    expect(rcodeOf(0, { additionals: [opt(1)] })).toBe('BADVERS'); // 1 << 4 | 0 = 16
    const nx = parseDns(response('nope.default.svc.cluster.local', 'A', 3, [], { authorities: [soa] }));
    expect(nx?.dns).toEqual({ id: 0x1234, query: 'nope.default.svc.cluster.local', qtype: 'A', rcode: 'NXDOMAIN', answers: [] });
  });

  it('names the types dns-packet does not know (HTTPS, SVCB) and the rest as RFC 3597 does', () => {
    expect(parseDns(query('example.com', 'UNKNOWN_65'))?.dns.qtype).toBe('HTTPS');
    expect(parseDns(query('_dns.resolver.arpa', 'UNKNOWN_64'))?.dns.qtype).toBe('SVCB');
    expect(parseDns(query('example.com', 'UNKNOWN_999'))?.dns.qtype).toBe('TYPE999');
  });

  it('a response without a question (FORMERR) is still a response; a query without one is nothing', () => {
    const noQuestion = encode({ type: 'response', id: 9, flags: 1, questions: [] });
    expect(parseDns(noQuestion)).toEqual({ kind: 'response', dns: { id: 9, query: '', qtype: '', rcode: 'FORMERR', answers: [] } });
    expect(parseDns(encode({ type: 'query', id: 9, questions: [] }))).toBeNull();
  });

  // 20 addresses for a long name, compressed as servers send them: 340 bytes, so the capture cuts the answers.
  const longName = 'a-rather-long-service-name.with-a-long-namespace.svc.cluster.local';
  const manyAddresses = Array.from({ length: 20 }, (_, i) => `10.1.${i}.${i + 1}`);
  const big = withCompressedA(response(longName, 'A', 0, [], {}, 0x4242), manyAddresses);
  // The same without compression (dns-packet's encoder does not compress), with an EDNS record at the end.
  const bigUncompressed = response(longName, 'A', 0, manyAddresses.map((ip) => a(longName, ip)), { additionals: [opt()] }, 0x4242);

  it('a response cut in its answer section keeps id, name, type, rcode and the answers that fit', () => {
    expect(big.length).toBeGreaterThan(CAPTURE_BYTES);
    expect(parseDns(big)?.dns).toEqual({ id: 0x4242, query: longName, qtype: 'A', rcode: 'NOERROR', answers: manyAddresses });
    const cut = parseDns(big.subarray(0, CAPTURE_BYTES));
    expect(cut?.kind).toBe('response');
    // 12 + question (68 + 4) = 84 bytes, then 16 per compressed A record: (256 - 84) / 16 = 10 whole ones.
    expect(cut?.dns).toEqual({ id: 0x4242, query: longName, qtype: 'A', rcode: 'NOERROR', answers: manyAddresses.slice(0, 10), truncated: true });
    // Uncompressed, 82 bytes per record: 2 fit.
    expect(parseDns(bigUncompressed.subarray(0, CAPTURE_BYTES))?.dns).toEqual({ id: 0x4242, query: longName, qtype: 'A', rcode: 'NOERROR', answers: manyAddresses.slice(0, 2), truncated: true });
  });

  it('a message cut anywhere never throws: before the question ends it is nothing, after it a prefix of the answers', () => {
    const questionEnd = 12 + longName.length + 2 + 4;
    for (const message of [big, bigUncompressed]) {
      for (let length = 0; length <= message.length; length++) {
        const parsed = parseDns(message.subarray(0, length));
        if (length < questionEnd) {
          expect(parsed, `cut at ${length}`).toBeNull();
          continue;
        }
        expect(parsed?.dns, `cut at ${length}`).toMatchObject({ id: 0x4242, query: longName, qtype: 'A', rcode: 'NOERROR' });
        const answers = parsed?.dns.answers ?? [];
        expect(answers, `cut at ${length}`).toEqual(manyAddresses.slice(0, answers.length));
        expect(parsed?.dns.truncated, `cut at ${length}`).toBe(length < message.length ? true : undefined);
      }
    }
  });

  it('a response whose only cut is the EDNS record or the SOA keeps every answer', () => {
    const withSoa = response('gone.example', 'A', 3, [], { authorities: [soa], additionals: [opt()] });
    expect(parseDns(withSoa.subarray(0, withSoa.length - 5))?.dns).toEqual({ id: 0x1234, query: 'gone.example', qtype: 'A', rcode: 'NXDOMAIN', answers: [], truncated: true });
    const two = response('x.example', 'A', 0, [a('x.example', '192.0.2.1'), a('x.example', '192.0.2.2')], { additionals: [opt()] });
    expect(parseDns(two.subarray(0, two.length - 3))?.dns.answers).toEqual(['192.0.2.1', '192.0.2.2']);
  });

  it('garbage is null or a sane summary, never a throw, and hostile counts cost a few tries', () => {
    expect(parseDns(Buffer.alloc(0))).toBeNull();
    expect(parseDns(Buffer.alloc(11))).toBeNull();
    expect(parseDns(Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n'))).toBeNull();
    expect(parseDns(Buffer.from('1603010200010001fc0303', 'hex'))).toBeNull(); // a TLS ClientHello's start
    // A name that points at itself.
    const loop = Buffer.from(query('x.example', 'A'));
    loop.writeUInt16BE(0xc00c, 12);
    expect(parseDns(loop)).toBeNull();
    // A question, then a claim of 65535 answers, authorities and additionals.
    const liar = Buffer.from(response('x.example', 'A', 0, []));
    liar.writeUInt16BE(0xffff, 6);
    liar.writeUInt16BE(0xffff, 8);
    liar.writeUInt16BE(0xffff, 10);
    expect(parseDns(Buffer.concat([liar, Buffer.alloc(CAPTURE_BYTES - liar.length, 0xc0)]))?.dns).toMatchObject({ query: 'x.example', answers: [], truncated: true });

    // Every count claiming 65535: dns-packet alone would allocate 4 x 65535 slots per try (about 2 ms a packet).
    const hostile = prng(65535);
    const started = performance.now();
    for (let i = 0; i < 20_000; i++) {
      const bytes = randomBytes(hostile, CAPTURE_BYTES);
      bytes.fill(0xff, 4, 12);
      parseDns(bytes);
    }
    expect(performance.now() - started).toBeLessThan(10_000);

    const next = prng(53);
    for (let i = 0; i < 20_000; i++) {
      const bytes = randomBytes(next, next() + 1);
      if (i % 2 === 0 && bytes.length > 5) bytes.writeUInt16BE(1, 4); // one question, so decoding gets further
      const parsed = parseDns(bytes);
      if (parsed === null) continue;
      expect(parsed.dns.id).toBe(bytes.readUInt16BE(0));
      for (const answer of parsed.dns.answers ?? []) expect(answer).not.toContain('undefined');
    }
  });
});

const http = (text: string) => parseHttp(Buffer.from(text, 'latin1'));

describe('HTTP/1.x start lines', () => {
  it('a request line gives method, target and version', () => {
    expect(http('GET /api/v1/orders?id=3 HTTP/1.1\r\nHost: shop\r\nUser-Agent: curl/8.5.0\r\n\r\n')).toEqual({
      kind: 'request',
      http: { version: 'HTTP/1.1', method: 'GET', path: '/api/v1/orders?id=3' },
    });
    expect(http('POST /login HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello')?.http).toEqual({ version: 'HTTP/1.0', method: 'POST', path: '/login' });
    expect(http('OPTIONS * HTTP/1.1\r\n\r\n')?.http.path).toBe('*');
    expect(http('CONNECT api.example.com:443 HTTP/1.1\r\n\r\n')?.http.path).toBe('api.example.com:443');
    expect(http('GET http://proxy.example/x HTTP/1.1\r\n\r\n')?.http.path).toBe('http://proxy.example/x');
    expect(http('DELETE /items/7 HTTP/1.1\n\n')?.http.method).toBe('DELETE'); // a bare LF ends a line too
  });

  it('a status line gives version and status', () => {
    expect(http('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}')).toEqual({ kind: 'response', http: { version: 'HTTP/1.1', status: 200 } });
    expect(http('HTTP/1.0 404 Not Found\r\n\r\n')?.http).toEqual({ version: 'HTTP/1.0', status: 404 });
    expect(http('HTTP/1.1 204\r\n\r\n')?.http.status).toBe(204); // no reason phrase
    expect(http('HTTP/1.1 503 Service Unavailable')?.http.status).toBe(503); // cut in the reason phrase
    expect(http('HTTP/1.1 100 Continue\r\n\r\n')?.http.status).toBe(100);
  });

  it('a request line cut before its version is a truncated request with the target it has', () => {
    const long = `GET /search?q=${'x'.repeat(400)} HTTP/1.1\r\nHost: s\r\n\r\n`;
    const cut = http(long.slice(0, CAPTURE_BYTES));
    expect(cut).toEqual({ kind: 'request', http: { version: '', method: 'GET', path: long.slice(4, CAPTURE_BYTES), truncated: true } });
    expect(http('GET /x HTT')?.http).toEqual({ version: '', method: 'GET', path: '/x', truncated: true });
    expect(http('GET /x ')?.http).toEqual({ version: '', method: 'GET', path: '/x', truncated: true });
    expect(http('GET /x HTTP/1.1')?.http).toEqual({ version: 'HTTP/1.1', method: 'GET', path: '/x' }); // only the line end is missing
    expect(http('GET ')).toBeNull();
    expect(http('GET')).toBeNull();
    expect(http('HTTP/1.1 20')).toBeNull();
    expect(http('HTTP/1.')).toBeNull();
  });

  it('every cut of a request or response is the message, a truncated request, or nothing; never a throw', () => {
    for (const text of ['PATCH /v2/users/42/settings?expand=all HTTP/1.1\r\nHost: users\r\n\r\n', 'HTTP/1.1 301 Moved Permanently\r\nLocation: /\r\n\r\n']) {
      for (let length = 0; length <= text.length; length++) {
        const parsed = http(text.slice(0, length));
        if (parsed === null) continue;
        expect(text.startsWith(parsed.http.method ?? 'HTTP/1.1'), `cut at ${length}`).toBe(true);
        if (parsed.http.path !== undefined) expect('/v2/users/42/settings?expand=all'.startsWith(parsed.http.path), `cut at ${length}`).toBe(true);
      }
      expect(http(text.slice(0, 20))).not.toBeNull();
    }
  });

  it('anything else is nothing: binary, TLS, SSH, HTTP/2, other versions, loose grammar', () => {
    const notHttp = [
      'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', // the HTTP/2 preface
      'HTTP/2 200\r\n',
      'HTTP/1.2 200 OK\r\n',
      'HTTP/1.1 600 Weird\r\n',
      'HTTP/1.1 099 Low\r\n',
      'HTTP/1.1 2000 OK\r\n',
      'HTTP/1.1 200 OK\x00\x01\r\n',
      'GET /x HTTP/2.0\r\n',
      'GET /x HTTP/1.1 extra\r\n',
      'GET /a b HTTP/1.1\r\n',
      'GET /x\r\n', // HTTP/0.9
      'get / HTTP/1.1\r\n',
      'GETX / HTTP/1.1\r\n',
      'GET  / HTTP/1.1\r\n',
      'GET x HTTP/1.1\r\n',
      'GET * HTTP/1.1\r\n',
      'GET /\x01 HTTP/1.1\r\n',
      'GET /caf\xe9 HTTP/1.1\r\n',
      'SSH-2.0-OpenSSH_9.6\r\n',
      '',
    ];
    for (const text of notHttp) expect(http(text), JSON.stringify(text)).toBeNull();
    expect(parseHttp(Buffer.from('160301020001000200030300', 'hex'))).toBeNull(); // a TLS ClientHello's start
    const next = prng(80);
    for (let i = 0; i < 20_000; i++) {
      const bytes = randomBytes(next, next() + 1);
      if (i % 3 === 0) bytes.write('GET /', 0, 'latin1');
      if (i % 3 === 1) bytes.write('HTTP/1.1 ', 0, 'latin1');
      const parsed = parseHttp(bytes);
      if (parsed !== null) expect(parsed.http.version === '' ? parsed.http.truncated : true).toBe(true);
    }
  });
});

const MS = 1_000_000n;
const CLIENT = '10.244.1.5';
const COREDNS = '10.96.0.10';
const WEB = '10.244.2.9';

function udp(timeNs: bigint, src: string, sport: number, dst: string, dport: number, payload: Buffer): L7Packet {
  return { timeNs, protocol: 'UDP', src, sport, dst, dport, payload };
}
function tcp(timeNs: bigint, src: string, sport: number, dst: string, dport: number, text: string): L7Packet {
  return { timeNs, protocol: 'TCP', src, sport, dst, dport, payload: Buffer.from(text, 'latin1') };
}
const ask = (t: bigint, id: number, name = 'web.shop.svc.cluster.local', sport = 40000) => udp(t, CLIENT, sport, COREDNS, 53, query(name, 'A', id));
const answer = (t: bigint, id: number, name = 'web.shop.svc.cluster.local', sport = 40000) =>
  udp(t, COREDNS, 53, CLIENT, sport, response(name, 'A', 0, [a(name, '10.96.3.7')], {}, id));
const get = (t: bigint, path: string, sport = 51000) => tcp(t, CLIENT, sport, WEB, 8080, `GET ${path} HTTP/1.1\r\nHost: web\r\n\r\n`);
const reply = (t: bigint, status: number, sport = 51000) => tcp(t, WEB, 8080, CLIENT, sport, `HTTP/1.1 ${status} X\r\nContent-Length: 0\r\n\r\n`);

/** The tracker's HTTP connection queues (private): they must empty as their requests go. */
const connectionsOf = (t: L7Tracker) => (t as unknown as { connections: Map<string, unknown> }).connections;

describe('L7Tracker', () => {
  it('pairs a DNS response with its query: kind, latency from the datapath times, rcode and answers', () => {
    const t = new L7Tracker();
    expect(t.observe(ask(1_000n * MS, 0x77))).toEqual({ type: 'dns', kind: 'request', dns: { id: 0x77, query: 'web.shop.svc.cluster.local', qtype: 'A' } });
    expect(t.stats()).toEqual({ pending: 1, evicted: 0, expired: 0 });
    expect(t.observe(answer(1_000n * MS + 2_500_000n, 0x77))).toEqual({
      type: 'dns',
      kind: 'response',
      latencyMs: 2.5,
      dns: { id: 0x77, query: 'web.shop.svc.cluster.local', qtype: 'A', rcode: 'NOERROR', answers: ['10.96.3.7'] },
    });
    expect(t.stats()).toEqual({ pending: 0, evicted: 0, expired: 0 });
    // Answered once: the same response again is a response without a query.
    expect(t.observe(answer(1_010n * MS, 0x77))?.latencyMs).toBeUndefined();
  });

  it('pairs DNS only on the reverse tuple with the same id', () => {
    const t = new L7Tracker();
    t.observe(ask(0n, 1));
    expect(t.observe(answer(MS, 2))?.latencyMs).toBeUndefined(); // another id
    expect(t.observe(answer(MS, 1, undefined, 40001))?.latencyMs).toBeUndefined(); // another client port
    expect(t.observe(udp(MS, '10.96.0.11', 53, CLIENT, 40000, response('web.shop.svc.cluster.local', 'A', 0, [], {}, 1)))?.latencyMs).toBeUndefined(); // another server
    expect(t.observe(udp(MS, CLIENT, 40000, COREDNS, 53, response('web.shop.svc.cluster.local', 'A', 0, [], {}, 1)))?.latencyMs).toBeUndefined(); // the query's own direction
    expect(t.stats().pending).toBe(1);
    expect(t.observe(answer(3n * MS, 1))?.latencyMs).toBe(3);
  });

  it('a retransmitted query replaces the pending one; NXDOMAIN and SERVFAIL pair like any answer', () => {
    const t = new L7Tracker();
    t.observe(ask(0n, 5));
    t.observe(ask(1_000n * MS, 5));
    expect(t.stats().pending).toBe(1);
    expect(t.observe(answer(1_004n * MS, 5))?.latencyMs).toBe(4);
    // The repeat is the young one now: a query older than it still expires first.
    t.observe(ask(0n, 9));
    t.observe(ask(1_000n * MS, 10));
    t.observe(ask(25_000n * MS, 9));
    expect(t.expire(31_000n * MS).map((s) => s.dns?.id)).toEqual([10]);
    expect(t.observe(answer(26_000n * MS, 9))?.latencyMs).toBe(1_000);
    t.observe(ask(0n, 6, 'nope.example'));
    expect(t.observe(udp(7n * MS, COREDNS, 53, CLIENT, 40000, response('nope.example', 'A', 3, [], { authorities: [soa] }, 6)))).toMatchObject({
      kind: 'response',
      latencyMs: 7,
      dns: { rcode: 'NXDOMAIN', answers: [] },
    });
    t.observe(ask(0n, 8, 'flaky.example'));
    expect(t.observe(udp(9n * MS, COREDNS, 53, CLIENT, 40000, response('flaky.example', 'A', 2, [], {}, 8)))?.dns?.rcode).toBe('SERVFAIL');
    expect(t.stats()).toEqual({ pending: 0, evicted: 0, expired: 1 });
  });

  it('a DNS response without a question takes the name and type of its query', () => {
    const t = new L7Tracker();
    t.observe(udp(0n, CLIENT, 40000, COREDNS, 53, query('odd.example', 'AAAA', 11)));
    const formerr = encode({ type: 'response', id: 11, flags: 1, questions: [] });
    expect(t.observe(udp(MS, COREDNS, 53, CLIENT, 40000, formerr))?.dns).toEqual({ id: 11, query: 'odd.example', qtype: 'AAAA', rcode: 'FORMERR', answers: [] });
  });

  it('pairs HTTP responses with their requests first in first out, per connection, pipelined or not', () => {
    const t = new L7Tracker();
    expect(t.observe(get(0n, '/a'))).toEqual({ type: 'http', kind: 'request', http: { version: 'HTTP/1.1', method: 'GET', path: '/a' } });
    t.observe(get(1n * MS, '/b'));
    t.observe(get(2n * MS, '/other', 51001)); // another connection of the same client
    t.observe(tcp(3n * MS, CLIENT, 51000, WEB, 8080, 'POST /c HTTP/1.1\r\nContent-Length: 0\r\n\r\n'));
    expect(t.observe(reply(10n * MS, 200))).toEqual({ type: 'http', kind: 'response', latencyMs: 10, http: { version: 'HTTP/1.1', status: 200, method: 'GET', path: '/a' } });
    expect(t.observe(reply(12n * MS, 404, 51001))).toMatchObject({ latencyMs: 10, http: { status: 404, path: '/other' } });
    expect(t.observe(reply(13n * MS, 500))).toMatchObject({ latencyMs: 12, http: { status: 500, method: 'GET', path: '/b' } });
    expect(t.observe(reply(15n * MS, 201))).toMatchObject({ latencyMs: 12, http: { status: 201, method: 'POST', path: '/c' } });
    expect(t.observe(reply(16n * MS, 200))).toEqual({ type: 'http', kind: 'response', http: { version: 'HTTP/1.1', status: 200 } }); // nothing pending
    expect(t.stats().pending).toBe(0);
    expect(connectionsOf(t).size).toBe(0);
  });

  it('an interim HTTP response (100 Continue) leaves its request waiting for the final one', () => {
    const t = new L7Tracker();
    t.observe(tcp(0n, CLIENT, 51000, WEB, 8080, 'PUT /upload HTTP/1.1\r\nExpect: 100-continue\r\n\r\n'));
    expect(t.observe(reply(1n * MS, 100))).toMatchObject({ latencyMs: 1, http: { status: 100, method: 'PUT', path: '/upload' } });
    expect(t.observe(reply(40n * MS, 201))).toMatchObject({ latencyMs: 40, http: { status: 201, method: 'PUT', path: '/upload' } });
    expect(t.stats().pending).toBe(0);
  });

  it('a truncated request pairs too, and its response says the path is cut', () => {
    const t = new L7Tracker();
    const long = `GET /${'p'.repeat(300)} HTTP/1.1\r\n`;
    t.observe({ ...get(0n, '/'), payload: Buffer.from(long.slice(0, CAPTURE_BYTES)) });
    expect(t.observe(reply(2n * MS, 200))?.http).toEqual({ version: 'HTTP/1.1', status: 200, method: 'GET', path: long.slice(4, CAPTURE_BYTES), truncated: true });
  });

  it('what is neither DNS on port 53 nor an HTTP/1.x start is null and remembered nowhere', () => {
    const t = new L7Tracker();
    expect(t.observe(udp(0n, CLIENT, 40000, COREDNS, 5353, query('x.local', 'A')))).toBeNull(); // mDNS is not port 53
    expect(t.observe(udp(0n, CLIENT, 40000, COREDNS, 53, Buffer.from('not dns')))).toBeNull();
    expect(t.observe(tcp(0n, CLIENT, 51000, WEB, 443, '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'))).toBeNull();
    expect(t.observe(tcp(0n, CLIENT, 51000, WEB, 80, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'))).toBeNull();
    expect(t.observe(tcp(0n, CLIENT, 51000, WEB, 53, query('x.example', 'A').toString('latin1')))).toBeNull(); // DNS over TCP is not HTTP
    expect(t.stats()).toEqual({ pending: 0, evicted: 0, expired: 0 });
  });

  it('expire() returns the requests unanswered for timeoutMs, oldest first, and only those', () => {
    const t = new L7Tracker({ timeoutMs: 30_000 });
    t.observe(ask(0n, 1));
    t.observe(get(10_000n * MS, '/slow'));
    t.observe(ask(20_000n * MS, 2));
    expect(t.expire(29_999n * MS)).toEqual([]);
    expect(t.expire(30_000n * MS)).toEqual([{ type: 'dns', kind: 'request', dns: { id: 1, query: 'web.shop.svc.cluster.local', qtype: 'A' } }]);
    expect(t.expire(45_000n * MS)).toEqual([{ type: 'http', kind: 'request', http: { version: 'HTTP/1.1', method: 'GET', path: '/slow' } }]);
    expect(t.stats()).toEqual({ pending: 1, evicted: 0, expired: 2 });
    expect(connectionsOf(t).size).toBe(0);
    // Too late: the response of an expired request pairs with nothing.
    expect(t.observe(answer(46_000n * MS, 1))?.latencyMs).toBeUndefined();
    expect(t.observe(reply(46_000n * MS, 200))?.http?.path).toBeUndefined();
    expect(t.observe(answer(46_000n * MS, 2))?.latencyMs).toBe(26_000);
  });

  it('expireRequests() gives back the context each request was observed with; a repeated query brings its own', () => {
    const t = new L7Tracker({ timeoutMs: 1_000 });
    t.observe(ask(0n, 1), { from: 'first try' });
    t.observe(get(0n, '/x'), { from: 'web client' });
    t.observe(ask(1n * MS, 1), { from: 'retry' });
    t.observe(ask(2n * MS, 2)); // none given
    expect(t.expireRequests(5_000n * MS).map((r) => [r.summary.dns?.id ?? r.summary.http?.path, r.context])).toEqual([
      ['/x', { from: 'web client' }],
      [1, { from: 'retry' }],
      [2, undefined],
    ]);
    expect(t.stats()).toEqual({ pending: 0, evicted: 0, expired: 3 });
  });

  it('beyond maxPending the oldest requests go first, counted, DNS and HTTP alike', () => {
    const t = new L7Tracker({ maxPending: 3 });
    t.observe(get(0n, '/first'));
    t.observe(get(1n * MS, '/second'));
    t.observe(ask(2n * MS, 1));
    t.observe(ask(3n * MS, 2));
    expect(t.stats()).toEqual({ pending: 3, evicted: 1, expired: 0 });
    // /first is gone: the connection's next response is /second's.
    expect(t.observe(reply(10n * MS, 200))?.http?.path).toBe('/second');
    t.observe(ask(11n * MS, 3));
    t.observe(ask(12n * MS, 4));
    expect(t.stats()).toEqual({ pending: 3, evicted: 2, expired: 0 });
    expect(t.observe(answer(20n * MS, 1))?.latencyMs).toBeUndefined();
    for (const id of [2, 3, 4]) expect(t.observe(answer(20n * MS, id))?.latencyMs, `id ${id}`).toBeDefined();
    expect(connectionsOf(t).size).toBe(0);
  });

  it('a flood of 100k distinct unanswered queries stays within maxPending, and real queries still pair', () => {
    const t = new L7Tracker();
    const next = prng(100_000);
    const started = performance.now();
    for (let i = 0; i < 100_000; i++) {
      const sport = 1024 + ((next() << 8) | next()) % 64_000;
      t.observe(udp(BigInt(i) * 1_000n, `10.244.${next()}.${next()}`, sport, COREDNS, 53, query(`x${i}.attacker.example`, 'A', i & 0xffff)));
    }
    const floodMs = performance.now() - started;
    expect(t.stats()).toEqual({ pending: DEFAULT_MAX_PENDING, evicted: 100_000 - DEFAULT_MAX_PENDING, expired: 0 });
    t.observe(ask(200n * MS, 4242));
    expect(t.observe(answer(201n * MS, 4242))?.latencyMs).toBe(1);
    // The real query evicted one more flood query; its answer took it out.
    expect(t.stats()).toEqual({ pending: DEFAULT_MAX_PENDING - 1, evicted: 100_000 - DEFAULT_MAX_PENDING + 1, expired: 0 });
    expect(t.expire(1_000_000n * MS)).toHaveLength(DEFAULT_MAX_PENDING - 1);
    expect(t.stats()).toEqual({ pending: 0, evicted: 100_000 - DEFAULT_MAX_PENDING + 1, expired: DEFAULT_MAX_PENDING - 1 });
    expect(floodMs).toBeLessThan(20_000); // about 1 s here: parsing dominates, nothing walks the pending requests
  });

  it('a flood of pipelined requests on one connection stays within maxPending and pairs with the oldest kept', () => {
    const t = new L7Tracker({ maxPending: 1_000 });
    for (let i = 0; i < 100_000; i++) t.observe(get(BigInt(i), `/r${i}`));
    expect(t.stats()).toEqual({ pending: 1_000, evicted: 99_000, expired: 0 });
    expect(t.observe(reply(200_000n, 200))?.http?.path).toBe('/r99000');
    expect(t.expire(1_000_000n * MS)).toHaveLength(999);
    expect(connectionsOf(t).size).toBe(0);
  });

  it('at the bound, a request evicts the oldest without iterating any Map (a Map finds its first entry by a walk)', () => {
    // V8 leaves a hole per deleted Map entry and finding the first steps over them: evicting a Map's first
    // entry cost 12 us at 16384 pending and 45 us at 131072, against 1.5 at 16. Timing is too noisy on a
    // shared machine to test, so this counts Map iterations while a flood evicts.
    const t = new L7Tracker({ maxPending: 1_000 });
    const payload = Buffer.from('GET / HTTP/1.1\r\n\r\n');
    const packet = (i: number): L7Packet => ({ timeNs: BigInt(i), protocol: 'TCP', src: CLIENT, sport: i % 65536, dst: `10.0.${(i >> 16) & 255}.1`, dport: 80, payload });
    const iterations = { count: 0 };
    const proto = Map.prototype as unknown as Record<string | symbol, (...args: unknown[]) => unknown>;
    const names: (string | symbol)[] = ['entries', 'keys', 'values', 'forEach', Symbol.iterator];
    const originals = names.map((name) => proto[name]!);
    names.forEach((name, i) => {
      proto[name] = function (this: unknown, ...args: unknown[]) {
        iterations.count++;
        return originals[i]!.apply(this, args);
      };
    });
    try {
      for (let i = 0; i < 5_000; i++) t.observe(packet(i));
      for (let i = 0; i < 5_000; i++) t.observe(i % 2 === 0 ? ask(BigInt(i), i) : answer(BigInt(i), i - 1));
    } finally {
      names.forEach((name, i) => (proto[name] = originals[i]!));
    }
    expect(t.stats()).toEqual({ pending: 999, evicted: 4_001, expired: 0 }); // the first query evicted one more, its answer left room
    expect(iterations.count).toBe(0);
  });
});

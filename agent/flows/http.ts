/**
 * HTTP/1.x messages the datapath hands up (the first 256 bytes of a TCP
 * segment whose payload begins with a method or "HTTP/1.") as flow-record
 * summaries: the request line or the status line, nothing of the headers.
 *
 * Hand-rolled: npm's HTTP parsers (llhttp and the like) parse a whole stream
 * and fail on a cut start line, which is exactly what a 256-byte capture of a
 * long URL is; the start line is one regular line.
 */
import type { HttpSummary, L7Summary } from '../../contract/flows.ts';

/** The methods a request may begin with (RFC 9110, and PATCH); the datapath's list must not be longer. */
export const HTTP_METHODS: readonly string[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

const VERSIONS: readonly string[] = ['HTTP/1.1', 'HTTP/1.0'];
const LF = 0x0a;
/** A request target: visible ASCII (RFC 9112 allows nothing else unencoded). */
const TARGET = /^[\x21-\x7e]+$/;
/** A status line after its version: SP, a 3-digit status (100..599), then SP and a reason phrase, or nothing. */
const STATUS_REST = /^ ([1-5]\d\d)(?:$| [\t\x20-\x7e\x80-\xff]*$)/;

/** A parsed HTTP/1.x start line: its summary, and whether it begins a request or a response. */
export interface HttpMessage {
  kind: L7Summary['kind'];
  http: HttpSummary;
}

/**
 * Parses the start of an HTTP/1.x message: "METHOD SP target SP HTTP/1.x" or
 * "HTTP/1.x SP status ...". A request line the bytes end in is still a
 * request when its method and target are there (http.truncated, version '').
 * Returns null for anything else: binary, TLS, the HTTP/2 preface, a status
 * line cut before its status. Never throws.
 */
export function parseHttp(payload: Buffer): HttpMessage | null {
  const lf = payload.indexOf(LF);
  const whole = lf !== -1; // the line end is in the bytes
  let end = whole ? lf : payload.length;
  if (whole && end > 0 && payload[end - 1] === 0x0d) end--;
  const line = payload.toString('latin1', 0, end);
  return line.startsWith('HTTP/') ? parseStatusLine(line) : parseRequestLine(line, whole);
}

function parseStatusLine(line: string): HttpMessage | null {
  const version = line.slice(0, 8);
  if (!VERSIONS.includes(version)) return null;
  const m = STATUS_REST.exec(line.slice(8));
  if (m === null) return null; // a status cut short is no status
  return { kind: 'response', http: { version, status: Number(m[1]) } };
}

function parseRequestLine(line: string, whole: boolean): HttpMessage | null {
  const sp1 = line.indexOf(' ');
  if (sp1 === -1) return null;
  const method = line.slice(0, sp1);
  if (!HTTP_METHODS.includes(method)) return null;
  const sp2 = line.indexOf(' ', sp1 + 1);
  const path = line.slice(sp1 + 1, sp2 === -1 ? line.length : sp2);
  if (!isTarget(method, path)) return null;

  if (sp2 === -1) {
    // "GET /path": HTTP/0.9 when the line ends here, a cut HTTP/1.x line when the bytes do.
    return whole ? null : truncatedRequest(method, path);
  }
  const version = line.slice(sp2 + 1);
  if (VERSIONS.includes(version)) return { kind: 'request', http: { version, method, path } };
  if (!whole && VERSIONS.some((v) => v.startsWith(version))) return truncatedRequest(method, path);
  return null;
}

function truncatedRequest(method: string, path: string): HttpMessage {
  return { kind: 'request', http: { version: '', method, path, truncated: true } };
}

/** origin-form (/path), asterisk-form (OPTIONS *), absolute-form (http://host/path), authority-form (CONNECT host:port). */
function isTarget(method: string, target: string): boolean {
  if (target === '' || !TARGET.test(target)) return false;
  if (target[0] === '/') return true;
  if (target === '*') return method === 'OPTIONS';
  if (method === 'CONNECT') return true;
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(target);
}

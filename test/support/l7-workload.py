#!/usr/bin/python3
"""A scripted L7 workload for the flow-record tests, run inside pods.

  dns-serve PORT            a DNS server on UDP PORT: names under .ok. answer an
                            A record (NOERROR), every other name NXDOMAIN
  http-serve PORT           an HTTP/1.1 server: /fail/... answers 500, anything else 200
  tcp-serve PORT            accepts connections and closes them
  dns-query SERVER PORT N K N queries, the first K for names that do not exist;
                            prints the rcodes it got
  http-get SERVER PORT N E  N requests on N connections, E of them to /fail/;
                            prints the statuses it got
  tcp-connect SERVER PORT N N connections, each closed at once

Each server prints "ready" once it listens. Hand-written DNS: the machine's
Python has no DNS library, and only the header and one question are needed.
"""
import http.client
import http.server
import socket
import struct
import sys

RCODE_NOERROR, RCODE_NXDOMAIN = 0, 3


def qname_end(msg, off):
    while msg[off] != 0:
        off += 1 + msg[off]
    return off + 1


def dns_serve(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        msg, peer = s.recvfrom(512)
        ident, flags, qd = struct.unpack("!HHH", msg[:6])
        end = qname_end(msg, 12)
        question = msg[12 : end + 4]
        labels, off = [], 12
        while msg[off] != 0:
            labels.append(msg[off + 1 : off + 1 + msg[off]].decode())
            off += 1 + msg[off]
        ok = labels and labels[-1] == "ok"
        rcode = RCODE_NOERROR if ok else RCODE_NXDOMAIN
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 1 if ok else 0, 0, 0)
        answer = b""
        if ok:
            answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([10, 0, 0, 1])
        s.sendto(header + question + answer, peer)


def dns_query(server, port, n, k):
    got = []
    for i in range(n):
        name = f"q{i}.{'missing' if i < k else 'ok'}"
        q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        msg = struct.pack("!HHHHHH", 0x1000 + i, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(msg, (server, port))
        reply, _ = s.recvfrom(512)
        got.append(struct.unpack("!H", reply[2:4])[0] & 0xF)
        s.close()
    print(" ".join(str(r) for r in got), flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status = 500 if self.path.startswith("/fail/") else 200
        body = b"failed\n" if status == 500 else b"ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def http_serve(port):
    server = http.server.HTTPServer(("0.0.0.0", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


def http_get(server, port, n, e):
    got = []
    for i in range(n):
        c = http.client.HTTPConnection(server, port, timeout=5)
        c.request("GET", f"/{'fail' if i < e else 'ok'}/{i}")
        r = c.getresponse()
        r.read()
        got.append(r.status)
        c.close()
    print(" ".join(str(s) for s in got), flush=True)


def tcp_serve(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        c.close()


def tcp_connect(server, port, n):
    for _ in range(n):
        c = socket.create_connection((server, port), timeout=5)
        c.close()
    print("done", flush=True)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "dns-serve":
        dns_serve(int(args[0]))
    elif mode == "http-serve":
        http_serve(int(args[0]))
    elif mode == "tcp-serve":
        tcp_serve(int(args[0]))
    elif mode == "dns-query":
        dns_query(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif mode == "http-get":
        http_get(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif mode == "tcp-connect":
        tcp_connect(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit(f"unknown mode {mode}")

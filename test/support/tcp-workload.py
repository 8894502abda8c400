#!/usr/bin/env python3
"""Scripted TCP workloads for test/tcp-health.test.ts, run inside pods' network namespaces.

  serve PORT drain|reset|sink   listen; print "ready"; then, per connection:
                                drain: read to EOF, close (an orderly close on both sides)
                                reset: close at once with SO_LINGER 0 (the peer receives an RST)
                                sink:  read and discard until EOF or an error (a thread each)
  connect IP PORT COUNT         COUNT connections one after another; prints JSON
                                {"ok": n, "refused": n, "reset": n, "other": n}:
                                ok: connected, sent a byte, closed (after the server's EOF);
                                refused: ECONNREFUSED; reset: ECONNRESET while waiting for data
  stream IP PORT SECONDS [RATE] one connection sending for SECONDS, never closing before then:
                                as fast as it goes (64 KiB writes), or RATE writes of 16 KiB a
                                second; prints the bytes the socket accepted
"""
import json
import socket
import struct
import sys
import threading
import time


def serve(port, mode):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(128)
    print("ready", flush=True)
    while True:
        conn, _ = ls.accept()
        if mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        elif mode == "drain":
            while conn.recv(65536):
                pass
            conn.close()
        else:
            threading.Thread(target=sink, args=(conn,), daemon=True).start()


def sink(conn):
    try:
        while conn.recv(1 << 20):
            pass
    except OSError:
        pass
    conn.close()


def connect(ip, port, count):
    result = {"ok": 0, "refused": 0, "reset": 0, "other": 0}
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((ip, port))
            s.sendall(b"x")
            s.shutdown(socket.SHUT_WR)
            # Wait for the server's FIN (drain) or RST (reset): the connection ends before the next.
            while s.recv(65536):
                pass
            result["ok"] += 1
        except ConnectionRefusedError:
            result["refused"] += 1
        except ConnectionResetError:
            result["reset"] += 1
        except OSError:
            result["other"] += 1
        finally:
            s.close()
    print(json.dumps(result), flush=True)


def stream(ip, port, seconds, rate):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect((ip, port))
    s.setblocking(False)
    chunk = b"\0" * (16384 if rate else 65536)
    sent = 0
    start = time.monotonic()
    end = start + seconds
    writes = 0
    while time.monotonic() < end:
        if rate and writes >= (time.monotonic() - start) * rate:
            time.sleep(0.001)
            continue
        try:
            sent += s.send(chunk)
            writes += 1
        except BlockingIOError:
            time.sleep(0.001)
    print(sent, flush=True)
    s.close()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    elif cmd == "connect":
        connect(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "stream":
        stream(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]) if len(sys.argv) > 5 else 0)
    else:
        sys.exit("usage: tcp-workload.py serve|connect|stream ...")

"""The packet fuzzer's worker (issue 30): one per pod, run inside the pod's netns.

usage: worker.py PEER_IPV4     (Debian's /usr/bin/python3, which has scapy)

Sends frames the orchestrator describes, straight onto eth0 (AF_PACKET: the
pod's own stack checks nothing, so every shape reaches the datapath), and
records every IPv4/IPv6 frame that arrives on eth0 (a second AF_PACKET socket,
which sees a frame before the pod's IP stack could drop it as malformed).

A frame is known by a hash of its IP packet with the fields a router changes
zeroed (TTL or hop limit, IPv4 header checksum), so the sender and the
receiver compute the same key for every shape, tiny fragments included.

JSON lines on stdin, one answer line each on stdout:
  {"op": "send", "packets": [WIRE, ...]}  -> {"hashes": [[frame hash, ...] per packet],
                                              "inner": [hash of a VXLAN packet's inner IP packet, or null, per packet]}
  {"op": "build", "packets": [WIRE, ...]} -> {"frames": [[frame hex, ...] per packet]} (nothing sent)
  {"op": "seen"}                          -> {"seen": {hash: count}} since the last "seen"
  {"op": "quit"}
and first, once ready: {"ready": true, "mac": ..., "gateway_mac": ...}.

WIRE (conformance/fuzz/wire.ts): family, src, dst, src_mac, dst_mac, options
(IPv4), ext (IPv6 chain), l4, payload (hex), truncate, frags, frag_id, ip_id
(IPv4 identification, IPv6 flow label), and for a VXLAN packet vxlan: vni,
flags and inner (a WIRE, sent whole inside the outer UDP datagram to l4's
ports, after an 8-byte VXLAN header).
"""
import hashlib
import json
import socket
import struct
import sys
import threading
import time

from scapy.all import ICMP, IP, TCP, UDP, Raw, conf  # noqa: E402
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6PacketTooBig,  # noqa: E402
                                ICMPv6ParamProblem, ICMPv6TimeExceeded, ICMPv6Unknown, IPv6)
from scapy.layers.sctp import SCTP, SCTPChunkAbort, SCTPChunkInit, SCTPChunkInitAck  # noqa: E402

conf.verb = 0
IFACE = "eth0"
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
PROTO = {"tcp": 6, "udp": 17, "sctp": 132}


def key_of(l3):
    """The frame's key: a hash of its IP packet, TTL / hop limit and IPv4 checksum zeroed."""
    b = bytearray(l3)
    if len(b) >= 20 and b[0] >> 4 == 4:
        b[8] = 0
        b[10] = b[11] = 0
    elif len(b) >= 40 and b[0] >> 4 == 6:
        b[7] = 0
    return hashlib.blake2b(bytes(b), digest_size=8).hexdigest()


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4_options(names, dst):
    out = b""
    for n in names:
        out += {
            "nop": b"\x01",
            "eol": b"\x00",
            "rr": bytes([7, 7, 4]) + b"\0" * 4,
            "ts": bytes([68, 8, 5, 0]) + b"\0" * 4,
            "lsrr": bytes([131, 7, 4]) + socket.inet_aton(dst),
            "ssrr": bytes([137, 7, 4]) + socket.inet_aton(dst),
            "ra": bytes([148, 4, 0, 0]),
        }[n]
    return out + b"\0" * (-len(out) % 4)


def ipv4_header(w, proto, body_len, ident, frag_word, options):
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + body_len, ident, frag_word, 64, proto, 0,
                      socket.inet_aton(w["src"]), socket.inet_aton(w["dst"])) + options
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]


def ipv6_header(w, nh, body_len):
    return struct.pack("!IHBB", 0x60000000 | (w.get("ip_id", 0) & 0xFFFFF), body_len, nh, 64) + socket.inet_pton(socket.AF_INET6, w["src"]) + \
        socket.inet_pton(socket.AF_INET6, w["dst"])


def ext_header(kind, nh, w, frag=(0, False)):
    if kind in ("hbh", "dst"):
        return bytes([nh, 0, 1, 4, 0, 0, 0, 0])  # PadN to 8 bytes
    if kind == "frag":
        offset, more = frag
        return bytes([nh, 0]) + struct.pack("!HI", (offset // 8) << 3 | int(more), w["frag_id"])
    # A Routing header (type 0, one segment left): dropped by design, whatever it says.
    return bytes([nh, 2, 0, 1, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, w["dst"])


EXT_NUMBER = {"hbh": 0, "dst": 60, "frag": 44, "rt": 43}


def transport(l4, fam, src, dst):
    """The transport header (or ICMP message) and its number, checksums computed for src and dst."""
    p = l4["p"]
    if p == "tcp":
        layer, num = TCP(sport=l4["sport"], dport=l4["dport"], flags=l4["flags"], seq=l4["seq"], ack=1 if "A" in l4["flags"] else 0), 6
    elif p == "udp":
        layer, num = UDP(sport=l4["sport"], dport=l4["dport"]), 17
    elif p == "sctp":
        chunk = {"init": lambda: SCTPChunkInit(init_tag=l4["tag"], a_rwnd=1500, n_out_streams=1, n_in_streams=1, init_tsn=1),
                 "init-ack": lambda: SCTPChunkInitAck(init_tag=l4["tag"], a_rwnd=1500, n_out_streams=1, n_in_streams=1, init_tsn=1),
                 "abort": lambda: SCTPChunkAbort()}[l4["chunk"]]()
        layer, num = SCTP(sport=l4["sport"], dport=l4["dport"], tag=0 if l4["chunk"] == "init" else l4["tag"]) / chunk, 132
    elif p == "echo":
        if fam == 4:
            layer = ICMP(type=0 if l4["reply"] else 8, id=l4["id"], seq=l4["seq"])
        else:
            layer = (ICMPv6EchoReply if l4["reply"] else ICMPv6EchoRequest)(id=l4["id"], seq=l4["seq"])
        num = 1 if fam == 4 else 58
    elif p == "icmp":
        layer = ICMP(type=l4["type"], code=l4["code"]) if fam == 4 else ICMPv6Unknown(type=l4["type"], code=l4["code"], msgbody=b"\0" * 4)
        num = 1 if fam == 4 else 58
    else:  # icmp-error: the quoted packet's header and transport header
        q = l4["quote"]
        qbody, qnum = transport(q["l4"], fam, q["src"], q["dst"])
        qbody = qbody[:8]
        if fam == 4:
            inner = ipv4_header({"src": q["src"], "dst": q["dst"]}, qnum, len(qbody) + 32, 0x1234, 0x4000, b"") + qbody
            t, c = l4["type"], l4["code"]
            extra = {"nexthopmtu": 1200} if (t, c) == (3, 4) else {"ptr": 0} if t == 12 else {}
            layer = ICMP(type=t, code=c, **extra) / Raw(inner)
        else:
            inner = ipv6_header({"src": q["src"], "dst": q["dst"]}, qnum, len(qbody) + 32) + qbody
            t, c = l4["type"], l4["code"]
            head = {1: lambda: ICMPv6DestUnreach(code=c), 2: lambda: ICMPv6PacketTooBig(mtu=1280),
                    3: lambda: ICMPv6TimeExceeded(code=c), 4: lambda: ICMPv6ParamProblem(code=c, ptr=6)}[t]()
            layer = head / Raw(inner)
        num = 1 if fam == 4 else 58
    under = IP(src=src, dst=dst) if fam == 4 else IPv6(src=src, dst=dst)
    full = bytes(under / layer)
    return full[20:] if fam == 4 else full[40:], num


def vxlan_l4(w):
    """A VXLAN packet's UDP datagram: header (length and checksum right, as a node's stack checks them), VXLAN header, inner frame."""
    v = w["vxlan"]
    body = struct.pack("!B3xI", v["flags"], v["vni"] << 8) + frames(v["inner"])[0]
    udp = UDP(sport=w["l4"]["sport"], dport=w["l4"]["dport"]) / Raw(body)
    if w["family"] == 4:
        return bytes(IP(src=w["src"], dst=w["dst"]) / udp)[20:]
    return bytes(IPv6(src=w["src"], dst=w["dst"]) / udp)[40:]


def inner_key(w):
    """The key of a VXLAN packet's inner IP packet (as it would arrive, decapsulated), or None."""
    return key_of(frames(w["vxlan"]["inner"])[0][14:]) if w.get("vxlan") else None


def frames(w):
    """The frames (Ethernet included) of one packet: whole, or its fragments in send order."""
    fam = w["family"]
    if w.get("vxlan"):
        l4, num = vxlan_l4(w), PROTO["udp"]
    else:
        l4, num = transport(w["l4"], fam, w["src"], w["dst"])
        l4 += bytes.fromhex(w["payload"])
    if w.get("truncate") is not None:
        l4 = l4[:w["truncate"]]
    eth = bytes.fromhex(w["dst_mac"].replace(":", "")) + bytes.fromhex(w["src_mac"].replace(":", "")) + \
        (b"\x08\x00" if fam == 4 else b"\x86\xdd")
    frags = w.get("frags")
    if fam == 4:
        options = ipv4_options(w.get("options") or [], w["dst"])
        if not frags:
            return [eth + ipv4_header(w, num, len(l4), w.get("frag_id") or w.get("ip_id", 0), 0x0000, options) + l4]
        out = []
        for offset, length, more in frags:
            piece = l4[offset:offset + length].ljust(length, b"\0")
            out.append(eth + ipv4_header(w, num, len(piece), w["frag_id"], (0x2000 if more else 0) | offset // 8, options) + piece)
        return out
    chain = w.get("ext") or []
    # Each extension header names the one after it; the last names the transport.
    numbers = [EXT_NUMBER[e] for e in chain] + [num]
    if "frag" not in chain or not frags:
        body = b"".join(ext_header(e, numbers[i + 1], w) for i, e in enumerate(chain)) + l4
        return [eth + ipv6_header(w, numbers[0], len(body)) + body]
    at = chain.index("frag")
    before = b"".join(ext_header(e, numbers[i + 1], w) for i, e in enumerate(chain[:at]))
    fragmentable = b"".join(ext_header(e, numbers[at + 1 + i + 1], w) for i, e in enumerate(chain[at + 1:])) + l4
    out = []
    for offset, length, more in frags:
        piece = fragmentable[offset:offset + length].ljust(length, b"\0")
        body = before + ext_header("frag", numbers[at + 1], w, (offset, more)) + piece
        out.append(eth + ipv6_header(w, numbers[0], len(body)) + body)
    return out


class Sniffer(threading.Thread):
    """Counts every IP frame that arrives on eth0, by key."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
        self.sock.bind((IFACE, 0))
        self.lock = threading.Lock()
        self.seen = {}
        self.last = time.time()

    def run(self):
        while True:
            data, addr = self.sock.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING or data[12:14] not in (b"\x08\x00", b"\x86\xdd"):
                continue
            k = key_of(data[14:])
            with self.lock:
                self.seen[k] = self.seen.get(k, 0) + 1
                self.last = time.time()

    def take(self, quiet=0.15, most=3.0):
        """What arrived so far, once nothing has arrived for `quiet` seconds (or after `most`)."""
        deadline = time.time() + most
        while time.time() < deadline and time.time() - self.last < quiet:
            time.sleep(0.02)
        with self.lock:
            out, self.seen = self.seen, {}
        return out


def gateway_mac(peer):
    """The MAC of the pod's gateway (the host veth, which answers ARP for it), learned by sending to a peer."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"fuzz-arp", (peer, 9))
        s.close()
    except OSError:
        pass
    for _ in range(50):
        with open("/proc/net/arp") as f:
            for line in f.read().splitlines()[1:]:
                cols = line.split()
                if len(cols) >= 6 and cols[5] == IFACE and cols[2] == "0x2":
                    return cols[3]
        time.sleep(0.02)
    return "ff:ff:ff:ff:ff:ff"


def main():
    mac = open("/sys/class/net/%s/address" % IFACE).read().strip()
    sniffer = Sniffer()
    sniffer.start()
    gw = gateway_mac(sys.argv[1])
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((IFACE, 0))
    print(json.dumps({"ready": True, "mac": mac, "gateway_mac": gw}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "send":
            out = []
            for w in cmd["packets"]:
                keys = []
                for fr in frames(w):
                    try:
                        tx.send(fr)
                    except OSError:
                        pass  # e.g. a frame over the MTU: it was not sent, so it cannot arrive
                    keys.append(key_of(fr[14:]))
                out.append(keys)
            print(json.dumps({"hashes": out, "inner": [inner_key(w) for w in cmd["packets"]]}), flush=True)
        elif op == "build":
            print(json.dumps({"frames": [[fr.hex() for fr in frames(w)] for w in cmd["packets"]]}), flush=True)
        elif op == "seen":
            print(json.dumps({"seen": sniffer.take()}), flush=True)
        elif op == "quit":
            break


if __name__ == "__main__":
    main()

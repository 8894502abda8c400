"""Crafted packets for datapath tests, sent from inside a pod's netns.

usage: packets.py <case> <args...>   (run with Debian's /usr/bin/python3, which has scapy)

  spoof-ip   DST PORT FAKE_SRC     UDP with a source address that is not the pod's
  spoof-mac  DST PORT              UDP from the pod's address with a forged MAC
  frag       DST PORT [SPORT]      a UDP datagram in 4 fragments; prints the echo or 'none'
  frag-tail  DST PORT              only the later fragments of a datagram
  options    DST PORT              UDP behind IPv4 options; prints the echo or 'none'
  syn-hammer DST PORT SECONDS      SYNs every 2 ms; prints how many TCP answers came back
  sctp       DST PORT              an SCTP INIT; prints 'answer' if anything (ICMP included) came back, else 'none'
  v6-stream  DST KIND SECONDS      IPv6, ten a second: ndp (neighbour advertisements, hop limit 255),
                                   rh (UDP to port 80 behind a Routing header) or udp (plain UDP to port 80)
  v6-count   SRC KIND SECONDS      counts the v6-stream packets of KIND from SRC that reach this pod
  spoof-frag DST PORT FAKE_SRC     the first fragment of a UDP datagram, from a source address not the pod's
  stream     DST PORT SPORT SECONDS PROTO
                                   udp: UDP from one source port, icmp: echo requests with id SPORT,
                                   ten a second; prints how many were sent
  count      SRC PORT SECONDS PROTO
                                   counts the UDP packets to PORT (or echo requests) from SRC that reach
                                   this pod within SECONDS; prints the count
  icmp-error DST QSRC QDST QSPORT QDPORT COUNT
                                   COUNT ICMP errors to DST, ten a second, each quoting a UDP packet
                                   QSRC:QSPORT -> QDST:QDPORT: IPv4 "fragmentation needed",
                                   IPv6 "packet too big" (the family is DST's)
  icmp-other DST TYPE COUNT        COUNT ICMP messages of TYPE (neither echo nor error), ten a second
  icmp-count SRC TYPE SECONDS      counts the ICMP or ICMPv6 messages of TYPE from SRC (or IPv4 ICMP from
                                   anyone: SRC any) that reach this pod
  flood      DST FLOWS [SPORT]   FLOWS UDP datagrams to DST, each a flow never seen before (new source
                                   and destination port pairs), as fast as plain sockets go; prints how
                                   many were sent
  connects   DST PORT COUNT PROTO  COUNT connections one after another (tcp: a handshake; udp: a datagram
                                   and its echo), 0.3 s each; prints how many got through
  frag-part  DST PORT SPORT ID first|rest
                                   one part of a UDP datagram (IPv4 or IPv6 by DST) in 4 fragments with
                                   identification ID: its first fragment, or the 3 after it
  frag-flood DST PORT COUNT ID     COUNT first fragments of UDP datagrams to DST, identifications ID and
                                   up (none ever completed), as fast as a raw socket goes; prints how many
  frag-send  DST PORT COUNT        COUNT UDP datagrams of FRAG_DATAGRAM_BYTES to DST, one after the other,
                                   through a plain socket (the kernel fragments them); prints how many
  v6-frag-dstopts DST PORT COUNT   COUNT UDP datagrams of FRAG_DATAGRAM_BYTES to DST (IPv6), each with
                                   Destination Options after its Fragment header, in fragments of 1280
  frag-recv  PORT COUNT SECONDS    a UDP socket on PORT (both families): prints "ready", then, once COUNT
                                   whole datagrams came or SECONDS passed, how many of each family came
                                   (reassembled and of the expected length), as JSON
  tcp-flags  DST PORT FLAGS COUNT  for each of the comma-separated scapy FLAGS (e.g. A,R,RA,F,PA), COUNT TCP
                                   segments with it and no connection behind them, from new source ports
  tcp-count  SRC PORT SECONDS      counts what reaches this pod from SRC to TCP PORT: segments, and every
                                   piece of a fragmented one (IPv4 or IPv6 by SRC)
  tcp-hold   DST PORT SECONDS      a TCP connection to an echo server, an echo every 0.2 s for SECONDS;
                                   prints {"echoes": N, "reset": bool} as JSON
  tcp-push-server PORT SECONDS     one TCP connection on PORT: prints "ready", then pushes a byte every 50 ms
                                   for SECONDS whatever it receives, and prints [[time, bytes], ...] received
  tcp-push-client DST PORT SECONDS a TCP connection sending 7 bytes every 50 ms for SECONDS
  tcp-forge-rst DST PORT FAKE_SRC COUNT
                                   COUNT RST segments from FAKE_SRC, random ephemeral source ports and
                                   sequence numbers, to DST:PORT
  udp-forge  DST PORT SRC SPORT    five UDP datagrams SRC:SPORT -> DST:PORT (SRC: another's or the pod's own)
  udp-count  PORT SECONDS          counts the UDP datagrams to PORT that reach this pod (either family)
  frag-overlap DST PORT            a TCP segment to DST:PORT in two fragments: the first holds the whole
                                   header, the second starts at offset 8, inside it
  vxlan      NODE INNER_SRC INNER_DST VTEP_MAC COUNT
                                   COUNT hand-built VXLAN packets (VNI 1) to NODE's UDP port 4789, ten a
                                   second, each holding UDP INNER_SRC:7100 -> INNER_DST:7000 in a frame
                                   to VTEP_MAC (the receiving node's VXLAN device)
"""
import signal
import socket
import sys
import threading
import time


def connects(dst, port, n, proto):
    """Plain sockets, no scapy: importing it would cost a second per call."""
    ok = 0
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    for _ in range(n):
        sock = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        sock.settimeout(0.3)
        try:
            if proto == "tcp":
                sock.connect((dst, port))
            else:
                sock.sendto(b"sluice-probe", (dst, port))
                sock.recvfrom(64)
            ok += 1
        except OSError:
            pass
        finally:
            sock.close()
    return ok


if __name__ == "__main__" and sys.argv[1:2] == ["connects"]:
    print(connects(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
    sys.exit(0)

# The modules used, not scapy.all: loading every layer took 0.6 s of CPU per call, this a third of it.
# A case that needs another layer (IPv6, SCTP, VXLAN) imports it where it builds or matches one.
from scapy.config import conf
from scapy.error import Scapy_Exception
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, fragment
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.sendrecv import AsyncSniffer, send, sendp

conf.verb = 0
IFACE = "eth0"
PAYLOAD = b"sluice-fragment-test-" * 10  # 210 bytes: several 64-byte fragments
FRAG_DATAGRAM_BYTES = 3000  # over a 1500-byte MTU: 3 fragments


def split_datagram(dst, port, sport, ident):
    """A UDP datagram carrying PAYLOAD in 4 fragments of 64 bytes or less (IPv6: 72 with its headers)."""
    if ":" in dst:
        from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
        return fragment6(IPv6(dst=dst) / IPv6ExtHdrFragment(id=ident) / UDP(sport=sport, dport=port) / Raw(PAYLOAD), 112)
    return fragment(IP(dst=dst, id=ident) / UDP(sport=sport, dport=port) / Raw(PAYLOAD), fragsize=64)


def ip_to(dst, **fields):
    """An IPv4 or IPv6 header to dst, by its family."""
    if ":" in dst:
        from scapy.layers.inet6 import IPv6
        return IPv6(dst=dst, **fields)
    return IP(dst=dst, **fields)


def answered(match, packets, timeout):
    """Sends the packets once a sniffer listens; returns whether a packet that matches came back,
    as soon as one does. Without an answer it waits the whole timeout, unless SIGUSR1 comes first:
    a caller sends it once it has the evidence that the packets were dropped (a drop counter), and
    "listening" on stderr says the signal may be sent."""
    given_up = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: given_up.set())
    listening = threading.Event()
    sniffer = AsyncSniffer(iface=IFACE, lfilter=match, stop_filter=match, started_callback=listening.set)
    sniffer.start()
    listening.wait(5)
    print("listening", file=sys.stderr, flush=True)
    send(packets)
    deadline = time.time() + timeout
    while sniffer.thread.is_alive() and not given_up.is_set() and time.time() < deadline:
        sniffer.join(0.02)
    try:
        got = sniffer.stop()
    except Scapy_Exception:  # it stopped by itself: an answer came
        got = sniffer.results
    return len(got) > 0


def echo_of(dst, port, packets, timeout=2.0):
    """Sends the packets and returns whether a UDP answer from dst:port came back."""
    return answered(lambda p: IP in p and p[IP].src == dst and UDP in p and p[UDP].sport == port, packets, timeout)


def sniff_count(match, seconds):
    """Counts the packets that match for `seconds` once the sniffer listens ("listening" on stderr),
    or until SIGUSR1: a caller sends it once a drop counter shows every packet it sent dropped."""
    given_up = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: given_up.set())
    listening = threading.Event()
    sniffer = AsyncSniffer(iface=IFACE, lfilter=match, started_callback=listening.set)
    sniffer.start()
    listening.wait(5)
    print("listening", file=sys.stderr, flush=True)
    deadline = time.time() + seconds
    while not given_up.is_set() and time.time() < deadline:
        given_up.wait(min(0.05, max(0.0, deadline - time.time())))
    return len(sniffer.stop())


def main():
    case, dst = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 0
    if case == "spoof-ip":
        send(IP(src=sys.argv[4], dst=dst) / UDP(sport=40000, dport=port) / Raw(b"spoofed"))
        print("sent")
    elif case == "spoof-mac":
        sendp(Ether(src="02:de:ad:be:ef:01", dst="ff:ff:ff:ff:ff:ff") / IP(dst=dst) / UDP(sport=40000, dport=port) / Raw(b"x"), iface=IFACE)
        print("sent")
    elif case == "frag":
        sport = int(sys.argv[4]) if len(sys.argv) > 4 else 40001
        frags = fragment(IP(dst=dst, id=sport) / UDP(sport=sport, dport=port) / Raw(PAYLOAD), fragsize=64)
        print("echo" if echo_of(dst, port, frags) else "none")
    elif case == "frag-tail":
        frags = fragment(IP(dst=dst, id=4343) / UDP(sport=40002, dport=port) / Raw(PAYLOAD), fragsize=64)
        send(frags[1:])
        print("sent", len(frags) - 1)
    elif case == "options":
        pkt = IP(dst=dst, options=[IPOption_NOP()] * 4) / UDP(sport=40003, dport=port) / Raw(b"options")
        print("echo" if echo_of(dst, port, [pkt]) else "none")
    elif case == "syn-hammer":
        seconds = float(sys.argv[4])
        sniffer = AsyncSniffer(iface=IFACE, lfilter=lambda p: IP in p and p[IP].src == dst and TCP in p)
        sniffer.start()
        deadline = time.time() + seconds
        sport = 20000
        while time.time() < deadline:
            send(IP(dst=dst) / TCP(sport=sport, dport=port, flags="S"))
            sport = 20000 + (sport + 1) % 20000
            time.sleep(0.002)
        time.sleep(0.5)
        print(len(sniffer.stop()))
    elif case == "sctp":
        from scapy.layers.sctp import SCTP, SCTPChunkInit
        init = IP(dst=dst) / SCTP(sport=5000, dport=port) / SCTPChunkInit(init_tag=1, a_rwnd=1500, n_out_streams=1, n_in_streams=1, init_tsn=1)
        print("answer" if answered(lambda p: IP in p and p[IP].src == dst, init, 1.5) else "none")
    elif case == "v6-stream":
        from scapy.layers.inet6 import IPv6, IPv6ExtHdrRouting, ICMPv6ND_NA
        kind, seconds = sys.argv[3], float(sys.argv[4])
        l3 = IPv6(dst=dst, hlim=255)
        pkt = {"ndp": l3 / ICMPv6ND_NA(tgt=dst, R=0, S=0, O=0) / Raw(b"covert"),
               "rh": l3 / IPv6ExtHdrRouting(segleft=0, addresses=[dst]) / UDP(sport=40600, dport=80) / Raw(b"rh"),
               "udp": l3 / UDP(sport=40601, dport=80) / Raw(b"plain")}[kind]
        deadline = time.time() + seconds
        while time.time() < deadline:
            send(pkt)
            time.sleep(0.1)
        print("sent")
    elif case == "v6-count":
        from scapy.layers.inet6 import IPv6, ICMPv6ND_NA
        kind, seconds = sys.argv[3], float(sys.argv[4])
        if kind == "ndp":
            match = lambda p: IPv6 in p and p[IPv6].src == dst and ICMPv6ND_NA in p
        else:
            match = lambda p: IPv6 in p and p[IPv6].src == dst and UDP in p and p[UDP].dport == 80 and p[UDP].sport == (40600 if kind == "rh" else 40601)
        print(sniff_count(match, seconds))
    elif case == "spoof-frag":
        frags = fragment(IP(src=sys.argv[4], dst=dst, id=4545) / UDP(sport=40004, dport=port) / Raw(PAYLOAD), fragsize=64)
        send(frags[0])
        print("sent")
    elif case == "stream":
        sport, seconds, proto = int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
        l4 = UDP(sport=sport, dport=port) / Raw(b"seed") if proto == "udp" else ICMP(type=8, id=sport, seq=1)
        sent, deadline = 0, time.time() + seconds
        while time.time() < deadline:
            send(ip_to(dst) / l4)
            sent += 1
            time.sleep(0.1)
        print(sent)
    elif case == "count":
        src, seconds, proto = dst, float(sys.argv[4]), sys.argv[5]
        if proto == "udp":
            match = lambda p: IP in p and p[IP].src == src and UDP in p and p[UDP].dport == port
        else:
            match = lambda p: IP in p and p[IP].src == src and ICMP in p and p[ICMP].type == 8
        print(sniff_count(match, seconds))
    elif case == "icmp-error":
        from scapy.layers.inet6 import IPv6, ICMPv6PacketTooBig
        qsrc, qdst, qsport, qdport, n = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
        quoted = UDP(sport=qsport, dport=qdport) / Raw(b"quoted-datagram")
        if ":" in dst:
            pkt = IPv6(dst=dst) / ICMPv6PacketTooBig(mtu=1280) / IPv6(src=qsrc, dst=qdst) / quoted
        else:
            pkt = IP(dst=dst) / ICMP(type=3, code=4, nexthopmtu=1200) / IP(src=qsrc, dst=qdst, flags="DF") / quoted
        for _ in range(n):
            send(pkt)
            time.sleep(0.1)
        print("sent", n)
    elif case == "icmp-other":
        kind, n = int(sys.argv[3]), int(sys.argv[4])
        for _ in range(n):
            send(IP(dst=dst) / ICMP(type=kind, code=0) / Raw(b"\0" * 12))
            time.sleep(0.1)
        print("sent", n)
    elif case == "icmp-count":
        from scapy.layers.inet6 import IPv6
        src, kind, seconds = dst, int(sys.argv[3]), float(sys.argv[4])
        if src == "any":
            match = lambda p: IP in p and ICMP in p and p[ICMP].type == kind
        elif ":" in src:
            match = lambda p: IPv6 in p and p[IPv6].src == src and p[IPv6].nh == 58 and bytes(p[IPv6].payload)[0] == kind
        else:
            match = lambda p: IP in p and p[IP].src == src and ICMP in p and p[ICMP].type == kind
        print(sniff_count(match, seconds))
    elif case == "flood":
        flows, sent = int(sys.argv[3]), 0
        base = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
        # One socket per source port from SPORT up, every destination port from 1024 up: 64,000 flows per socket.
        for sport in range(base, base + flows // 64000 + 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("0.0.0.0", sport))
            for dport in range(1024, 65024):
                if sent == flows:
                    break
                sock.sendto(b"x", (dst, dport))
                sent += 1
            sock.close()
        print(sent)
    elif case == "frag-part":
        sport, ident, part = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        frags = split_datagram(dst, port, sport, ident)
        send(frags[:1] if part == "first" else frags[1:])
        print("sent", 1 if part == "first" else len(frags) - 1)
    elif case == "frag-flood":
        count, first_id = int(sys.argv[4]), int(sys.argv[5])
        v6 = ":" in dst
        # Warm the neighbour entry of the gateway: raw packets queued behind resolution can be dropped.
        socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM).sendto(b"w", (dst, port))
        time.sleep(0.2)
        if v6:
            from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
            head = bytearray(bytes(IPv6(dst=dst) / IPv6ExtHdrFragment(id=0, m=1) / UDP(sport=40700, dport=port) / Raw(PAYLOAD[:64])))
            id_at, id_len = 44, 4
        else:
            head = bytearray(bytes(IP(dst=dst, id=0, flags="MF") / UDP(sport=40700, dport=port) / Raw(PAYLOAD[:64])))
            id_at, id_len = 4, 2
        # IPPROTO_RAW: the header is ours (IPv4: the kernel only fills in the checksum).
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for i in range(count):
            head[id_at:id_at + id_len] = ((first_id + i) % (1 << (8 * id_len)) or 1).to_bytes(id_len, "big")
            sock.sendto(head, (dst, 0))
        print(count)
    elif case == "frag-send":
        count = int(sys.argv[4])
        sock = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(count):
            sock.sendto(b"f" * FRAG_DATAGRAM_BYTES, (dst, port))
        print(count)
    elif case == "v6-frag-dstopts":
        from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, fragment6
        count = int(sys.argv[4])
        for i in range(count):
            datagram = IPv6(dst=dst) / IPv6ExtHdrFragment(id=0x5100 + i) / IPv6ExtHdrDestOpt() / UDP(sport=41500 + i, dport=port) / Raw(b"f" * FRAG_DATAGRAM_BYTES)
            send(fragment6(datagram, 1280), verbose=0)
        print(count)
    elif case == "frag-recv":
        import json
        port, want, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root): the whole burst fits
        sock.bind(("::", port))
        got = {"4": 0, "6": 0}
        print("ready", flush=True)
        deadline = time.time() + seconds
        while got["4"] + got["6"] < want and time.time() < deadline:
            sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data, addr = sock.recvfrom(65535)
            except socket.timeout:
                break
            if data in (PAYLOAD, b"f" * FRAG_DATAGRAM_BYTES):
                got["4" if addr[0].startswith("::ffff:") else "6"] += 1
        print(json.dumps(got))
    elif case == "tcp-flags":
        flags, n, sport, sent = sys.argv[4].split(","), int(sys.argv[5]), 42000, 0
        for f in flags:
            for _ in range(n):
                send(ip_to(dst) / TCP(sport=sport, dport=port, flags=f, seq=1000 + sent, ack=5000))
                sport += 1
                sent += 1
        print("sent", sent)
    elif case == "tcp-count":
        src, seconds = dst, float(sys.argv[4])
        from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

        def match(p):
            if ":" in src:
                if IPv6 not in p or p[IPv6].src != src:
                    return False
                if IPv6ExtHdrFragment in p and p[IPv6ExtHdrFragment].offset > 0:
                    return True
            else:
                if IP not in p or p[IP].src != src:
                    return False
                if p[IP].frag > 0:
                    return True
            return TCP in p and p[TCP].dport == port
        print(sniff_count(match, seconds))
    elif case == "tcp-hold":
        import json
        seconds, echoes, reset = float(sys.argv[4]), 0, False
        sock = socket.create_connection((dst, port), timeout=2)
        deadline = time.time() + seconds
        try:
            while time.time() < deadline:
                sock.sendall(b"ping")
                if sock.recv(64):
                    echoes += 1
                time.sleep(0.2)
        except OSError:
            reset = True
        sock.close()
        print(json.dumps({"echoes": echoes, "reset": reset}))
    elif case == "tcp-push-server":
        import json, select
        port, seconds = int(dst), float(sys.argv[3])
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", port))
        srv.listen(1)
        print("ready", flush=True)
        srv.settimeout(seconds)
        conn, _ = srv.accept()
        conn.setblocking(False)
        got, deadline = [], time.time() + seconds
        while time.time() < deadline:
            try:
                conn.send(b"p")
            except OSError:
                pass
            if select.select([conn], [], [], 0.05)[0]:
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if data:
                    got.append([time.time(), len(data)])
        print(json.dumps(got))
    elif case == "tcp-push-client":
        seconds = float(sys.argv[4])
        sock = socket.create_connection((dst, port), timeout=2)
        sock.setblocking(False)
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                sock.send(b"a" * 7)
                sock.recv(4096)
            except OSError:
                pass
            time.sleep(0.05)
        print("done")
    elif case == "tcp-forge-rst":
        import random
        fake, n = sys.argv[4], int(sys.argv[5])
        for _ in range(n):
            send(ip_to(dst, src=fake) / TCP(sport=random.randint(32768, 60999), dport=port, flags="R", seq=random.getrandbits(32)))
        print("sent", n)
    elif case == "udp-forge":
        src, sport = sys.argv[4], int(sys.argv[5])
        for _ in range(5):
            send(ip_to(dst, src=src) / UDP(sport=sport, dport=port) / Raw(b"forged-reply"))
        print("sent 5")
    elif case == "udp-count":
        from scapy.layers.inet6 import IPv6
        seconds = float(sys.argv[3])
        print(sniff_count(lambda p: (IP in p or IPv6 in p) and UDP in p and p[UDP].dport == int(dst), seconds))
    elif case == "frag-overlap":
        from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
        segment = bytes(TCP(sport=42500, dport=port, flags="S", seq=1) / Raw(b"abcd"))  # 24 bytes: 3 units of 8
        inside = segment[8:24]  # would rewrite ack, offset, flags, window, checksum on reassembly
        if ":" in dst:
            first = IPv6(dst=dst, nh=44) / IPv6ExtHdrFragment(nh=6, id=777, offset=0, m=1) / Raw(segment)
            later = IPv6(dst=dst, nh=44) / IPv6ExtHdrFragment(nh=6, id=777, offset=1, m=0) / Raw(inside)
        else:
            first = IP(dst=dst, id=777, proto=6, flags="MF", frag=0) / Raw(segment)
            later = IP(dst=dst, id=777, proto=6, frag=1) / Raw(inside)
        send(first)
        send(later)
        print("sent 2")
    elif case == "vxlan":
        from scapy.layers.vxlan import VXLAN
        inner_src, inner_dst, vtep_mac, n = sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
        inner = Ether(src="02:de:ad:00:00:01", dst=vtep_mac) / IP(src=inner_src, dst=inner_dst, ttl=64) / UDP(sport=7100, dport=7000) / Raw(b"tunnelled")
        pkt = IP(dst=dst) / UDP(sport=47890, dport=4789) / VXLAN(vni=1, flags=0x08) / inner
        for _ in range(n):
            send(pkt)
            time.sleep(0.1)
        print("sent", n)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()

/**
 * The in-kernel conntrack sweep (ct_sweep, run through BPF_PROG_TEST_RUN) on
 * a real loaded datapath: it removes exactly the entries no packet will match
 * again (idle past the timeout, or bound to an endpoint whose address is gone
 * or changed hands), uncharges their endpoints, and leaves live flows alone;
 * likewise the fragment entries of datagrams past their reassembly time.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConntrackSweeper } from '../agent/reclaim/conntrack-sweep.ts';
import { CT_BUCKET_REMOTE, CT_COUNT, CT_KEY, CT_SHARED_KEY, CT_VALUE, Direction, FRAG_KEY, FRAG_TIMEOUT_SEC, FRAG_VALUE, decodeCtCount, decodeFragCount, encodeDatapathConfig, encodeEndpointInfo, encodeEndpointKey, encodeU32 } from '../datapath/abi.ts';
import { ensureBpffs } from '../datapath/bpffs.ts';
import { bpfObjectPath } from '../datapath/bpf-object.ts';
import { loadDatapath, removeDatapath, type Datapath } from '../datapath/loader.ts';

const NSEC_PER_SEC = 1_000_000_000n;
const UDP = 17;
const TCP = 6;

/** A conntrack key for an IPv4 flow. */
function ctKey(src: string, dst: string, sport: number, dport: number, protocol: number): Buffer {
  const m = CT_KEY.members;
  const key = Buffer.alloc(CT_KEY.size);
  Buffer.from(src.split('.').map(Number)).copy(key, m.saddr);
  Buffer.from(dst.split('.').map(Number)).copy(key, m.daddr);
  key.writeUInt16BE(sport, m.sport);
  key.writeUInt16BE(dport, m.dport);
  key.writeUInt8(protocol, m.protocol);
  key.writeUInt8(4, m.family);
  return key;
}

/** The remote bucket these tests charge flows opened from off the node to (world's). */
const REMOTE_BUCKET = CT_BUCKET_REMOTE + 2; // + not |: JS bitwise operators are signed 32-bit
/** struct ct_value.flags: the flow was answered (a TCP flow then idles out after the TCP timeout). */
const CT_REPLIED = 1 << 4;

/**
 * A conntrack value last seen `idleSec` ago (the kernel's clock is CLOCK_MONOTONIC, as hrtime is),
 * charged as the datapath charges it: to its local opener, else to the remote bucket.
 */
function ctValue(idleSec: number, srcEndpoint: number, dstEndpoint: number, flags = 0): Buffer {
  const m = CT_VALUE.members;
  const value = Buffer.alloc(CT_VALUE.size);
  const seen = process.hrtime.bigint() - BigInt(idleSec) * NSEC_PER_SEC;
  value.writeBigUInt64LE(seen, m.created_ns);
  value.writeBigUInt64LE(seen, m.last_seen_ns);
  value.writeUInt32LE(flags, m.flags);
  value.writeUInt32LE(srcEndpoint, m.src_endpoint);
  value.writeUInt32LE(dstEndpoint, m.dst_endpoint);
  value.writeUInt32LE(srcEndpoint || REMOTE_BUCKET, m.charged);
  return value;
}

function countValue(n: number, fragments = 0): Buffer {
  const v = Buffer.alloc(CT_COUNT.size);
  v.writeBigInt64LE(BigInt(n), CT_COUNT.members.entries);
  v.writeBigInt64LE(BigInt(fragments), CT_COUNT.members.fragments);
  return v;
}

/** A fragment key of an IPv4 UDP datagram charged to an endpoint. */
function fragKey(src: string, dst: string, id: number, endpoint: number): Buffer {
  const m = FRAG_KEY.members;
  const key = Buffer.alloc(FRAG_KEY.size);
  Buffer.from(src.split('.').map(Number)).copy(key, m.saddr);
  Buffer.from(dst.split('.').map(Number)).copy(key, m.daddr);
  key.writeUInt32LE(id, m.id);
  key.writeUInt32LE(endpoint, m.endpoint);
  key.writeUInt8(UDP, m.protocol);
  key.writeUInt8(4, m.family);
  key.writeUInt8(Direction.EGRESS, m.direction);
  return key;
}

/** A fragment entry whose first fragment came `ageSec` ago, half seen. */
function fragValue(ageSec: number): Buffer {
  const m = FRAG_VALUE.members;
  const value = Buffer.alloc(FRAG_VALUE.size);
  value.writeBigUInt64LE(process.hrtime.bigint() - BigInt(ageSec) * NSEC_PER_SEC, m.created_ns);
  value.writeBigUInt64LE(1480n, m.seen_bytes);
  value.writeUInt16BE(40000, m.sport);
  value.writeUInt16BE(53, m.dport);
  return value;
}

describe('conntrack sweep', () => {
  let pinDir = '';
  let dp: Datapath;

  beforeAll(() => {
    ensureBpffs();
    pinDir = mkdtempSync('/sys/fs/bpf/sluice-ctsweep-');
    dp = loadDatapath({ pinDir, objectBytes: readFileSync(bpfObjectPath()) });
    // Short timeouts: an entry "idle for 6 h" cannot exist on a machine up for less (the clock starts at boot).
    dp.maps.config.update(encodeU32(0), encodeDatapathConfig({ ctTimeoutTcpSec: 60, ctTimeoutOtherSec: 20 }));
  });
  afterAll(() => {
    dp?.close();
    if (pinDir) removeDatapath(pinDir);
  });

  it('removes expired and stale entries, uncharges their endpoints and keeps live flows', () => {
    const { conntrack, ct_counts, endpoints } = dp.maps;
    // Endpoint 7 owns 10.1.0.7; endpoint 9 is gone; 10.1.0.8 now belongs to endpoint 11, not to 8.
    endpoints.update(encodeEndpointKey({ family: 4, address: '10.1.0.7' }), encodeEndpointInfo({ ifindex: 70, endpointId: 7, identity: 300, flags: 0, policyRev: 0, mac: '02:00:00:00:00:07', hostMac: 'ee:00:00:00:00:07', ipv4: '10.1.0.7', ipv6: null }));
    endpoints.update(encodeEndpointKey({ family: 4, address: '10.1.0.8' }), encodeEndpointInfo({ ifindex: 80, endpointId: 11, identity: 300, flags: 0, policyRev: 0, mac: '02:00:00:00:00:08', hostMac: 'ee:00:00:00:00:08', ipv4: '10.1.0.8', ipv6: null }));
    const live = [ctKey('10.1.0.7', '10.9.0.1', 40000, 53, UDP), ctValue(5, 7, 0)] as const;
    const liveTcp = [ctKey('10.9.0.1', '10.1.0.7', 40001, 80, TCP), ctValue(30, 0, 7, CT_REPLIED)] as const; // TCP: 60 s here
    // Never answered: idles out after the other protocols' timeout (20 s here), not TCP's.
    const unanswered = [ctKey('10.9.0.2', '10.1.0.7', 40006, 80, TCP), ctValue(30, 0, 7)] as const;
    const expired = [ctKey('10.1.0.7', '10.9.0.1', 40002, 53, UDP), ctValue(40, 7, 0)] as const; // UDP: 20 s here
    const gone = [ctKey('10.1.0.9', '10.9.0.1', 40003, 53, UDP), ctValue(1, 9, 0)] as const;
    const handedOver = [ctKey('10.9.0.1', '10.1.0.8', 40004, 80, TCP), ctValue(1, 0, 8)] as const;
    // Stamped by a packet on another CPU after the sweep read its clock: busy, not 2^64 ns idle.
    const justSeen = [ctKey('10.1.0.7', '10.9.0.1', 40005, 53, UDP), ctValue(-5, 7, 0)] as const;
    for (const [key, value] of [live, liveTcp, unanswered, expired, gone, handedOver, justSeen]) conntrack.update(key, value);
    ct_counts.update(encodeU32(7), countValue(3));
    ct_counts.update(encodeU32(9), countValue(1));
    ct_counts.update(encodeU32(8), countValue(1));
    // Opened from off the node: liveTcp, unanswered and handedOver, all from the shared part of the table.
    ct_counts.update(encodeU32(REMOTE_BUCKET), countValue(3));
    ct_counts.update(encodeU32(CT_SHARED_KEY), countValue(3));

    const sweeper = new ConntrackSweeper(dp.progPaths.ctSweep, ct_counts, () => [7, 11], () => {});
    try {
      expect(sweeper.sweep()).toEqual({ scanned: 7, expired: 2, stale: 2, fragScanned: 0, fragExpired: 0 });
      for (const [key] of [live, liveTcp, justSeen]) expect(conntrack.lookup(key)).not.toBeNull();
      for (const [key] of [expired, unanswered, gone, handedOver]) expect(conntrack.lookup(key)).toBeNull();
      // Endpoint 7 keeps its two live flows; the remote bucket and the shared part keep liveTcp; the gone
      // endpoints' budgets are dropped.
      expect(decodeCtCount(ct_counts.lookup(encodeU32(7))!)).toBe(2);
      expect(decodeCtCount(ct_counts.lookup(encodeU32(REMOTE_BUCKET))!)).toBe(1);
      expect(decodeCtCount(ct_counts.lookup(encodeU32(CT_SHARED_KEY))!)).toBe(1);
      expect(ct_counts.lookup(encodeU32(9))).toBeNull();
      expect(ct_counts.lookup(encodeU32(8))).toBeNull();

      // A second sweep finds nothing more to do.
      expect(sweeper.sweep()).toMatchObject({ scanned: 3, expired: 0, stale: 0 });
    } finally {
      sweeper.stop();
    }
  });

  it('removes the fragment entries of datagrams past their reassembly time and uncharges their endpoint', () => {
    const { fragments, ct_counts } = dp.maps;
    const young = fragKey('10.1.0.7', '10.9.0.1', 100, 7);
    const justCreated = fragKey('10.1.0.7', '10.9.0.1', 103, 7); // by another CPU, after the sweep read its clock
    const old = [fragKey('10.1.0.7', '10.9.0.1', 101, 7), fragKey('10.1.0.7', '10.9.0.1', 102, 7)];
    fragments.update(young, fragValue(FRAG_TIMEOUT_SEC - 5));
    fragments.update(justCreated, fragValue(-5));
    for (const key of old) fragments.update(key, fragValue(FRAG_TIMEOUT_SEC + 5));
    ct_counts.update(encodeU32(7), countValue(2, 4));

    const sweeper = new ConntrackSweeper(dp.progPaths.ctSweep, ct_counts, () => [7], () => {});
    try {
      expect(sweeper.sweep()).toMatchObject({ fragScanned: 4, fragExpired: 2 });
      for (const key of [young, justCreated]) expect(fragments.lookup(key)).not.toBeNull();
      for (const key of old) expect(fragments.lookup(key)).toBeNull();
      const count = ct_counts.lookup(encodeU32(7))!;
      expect(decodeFragCount(count)).toBe(2);
      expect(decodeCtCount(count)).toBe(2); // the conntrack charge is untouched
      expect(sweeper.sweep()).toMatchObject({ fragScanned: 2, fragExpired: 0 });
    } finally {
      sweeper.stop();
      for (const key of [young, justCreated]) fragments.delete(key);
    }
  });
});

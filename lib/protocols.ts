/**
 * IP protocols: the one table of their names and IANA numbers, read by the
 * policy compiler (NetworkPolicy's protocol names), the agent's policy view
 * and the monitor (the numbers in datapath records). Pure, no I/O.
 */

/** IANA protocol number of each protocol the datapath parses, by the name people read. */
export const Protocol = { ICMP: 1, TCP: 6, UDP: 17, ICMPv6: 58, SCTP: 132 } as const;

/** The name of a protocol in the table ('TCP', 'ICMPv6', ...). */
export type ProtocolName = keyof typeof Protocol;

/**
 * In a policy entry: every protocol, and then every port. 0 is IANA's HOPOPT,
 * an IPv6 extension header that the datapath walks past, so it is never a
 * packet's transport protocol. The datapath's SLUICE_PROTO_ANY is this value:
 * datapath/abi.ts takes its PROTO_ANY from here, and test/abi.test.ts checks
 * it against bpf/sluice.h.
 */
export const PROTOCOL_ANY = 0;

const NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Protocol).map(([name, n]) => [n, name]));
const WITH_PORTS: ReadonlySet<number> = new Set([Protocol.TCP, Protocol.UDP, Protocol.SCTP]);

/** The name of an IANA protocol number ('TCP'), or the number as text when the table has none. */
export function protocolName(protocol: number): string {
  return NAMES.get(protocol) ?? String(protocol);
}

/** True when the protocol's packets carry source and destination ports (TCP, UDP, SCTP). */
export function hasPorts(protocol: number): boolean {
  return WITH_PORTS.has(protocol);
}

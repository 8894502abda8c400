/** Readable names of reserved identities and IP protocols, shared by `sluice policy` and the monitor. */
import { Identity } from '../datapath/abi.ts';

/** Reserved identity → its short name ('host', 'world', ...). */
export const RESERVED_IDENTITY_NAMES: Record<number, string> = {
  [Identity.HOST]: 'host',
  [Identity.WORLD]: 'world',
  [Identity.UNMANAGED]: 'unmanaged',
  [Identity.REMOTE_NODE]: 'remote-node',
  [Identity.SERVICE]: 'service',
};

/** IANA protocol number → name, for the protocols the datapath parses. */
export const PROTOCOL_NAMES: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

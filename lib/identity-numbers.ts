/**
 * The identity number space: the reserved identities (number and name), where
 * pod identities start and where address selectors start. Pure, no I/O.
 *
 * Why in lib/: the numbers are kernel ABI (SLUICE_ID_* in bpf/sluice.h: the
 * datapath treats host and world specially), yet policy/ hands out the
 * numbers above them and must know nothing of the kernel, while datapath/
 * must know nothing of policy. lib/ sits under both, so the one table lives
 * here: datapath/abi.ts re-exports Identity as its mirror of SLUICE_ID_*, and
 * test/abi.test.ts checks every number against the header through it.
 */

/** The reserved identities a packet can have: one row each, its number and the name people read. */
const RESERVED = {
  /** This node's own addresses. */
  HOST: { identity: 1, name: 'host' },
  /** Every address the ipcache does not know. */
  WORLD: { identity: 2, name: 'world' },
  /** A pod Sluice does not manage. */
  UNMANAGED: { identity: 3, name: 'unmanaged' },
  /** Other nodes' addresses. */
  REMOTE_NODE: { identity: 4, name: 'remote-node' },
  /** Service (ClusterIP) addresses: the stack translates them after from-pod. */
  SERVICE: { identity: 5, name: 'service' },
} as const;

type Reserved = typeof RESERVED;

/** Identity numbers (SLUICE_ID_*): the reserved ones, and the first of each numbered range. */
export const Identity = {
  /** In policy entries: any peer (a wildcard, never a packet's identity). */
  ANY: 0,
  ...(Object.fromEntries(Object.entries(RESERVED).map(([key, r]) => [key, r.identity])) as { [K in keyof Reserved]: Reserved[K]['identity'] }),
  /** Pod identities (one per label set) count up from here. */
  FIRST_POD: 256,
  /** Address selectors (ipBlock peers, named ports resolved per remote pod) count up from here. */
  FIRST_CIDR_SELECTOR: 2 ** 24,
} as const;

/** A reserved identity and its name, as `sluice identities` lists them. */
export interface ReservedIdentity {
  identity: number;
  name: string;
}

/** The reserved identities, in number order. */
export const RESERVED_IDENTITIES: readonly ReservedIdentity[] = Object.values(RESERVED)
  .map((r) => ({ identity: r.identity, name: r.name }))
  .sort((a, b) => a.identity - b.identity);

const NAMES: ReadonlyMap<number, string> = new Map(RESERVED_IDENTITIES.map((r) => [r.identity, r.name]));

/** The name of a reserved identity ('host', 'remote-node', ...); undefined for any other number. */
export function reservedIdentityName(identity: number): string | undefined {
  return NAMES.get(identity);
}

/** Readable names of reserved identities, shared by `sluice policy` and the monitor. */
import { Identity } from '../datapath/abi.ts';

/** Reserved identity → its short name ('host', 'world', ...). */
export const RESERVED_IDENTITY_NAMES: Record<number, string> = {
  [Identity.HOST]: 'host',
  [Identity.WORLD]: 'world',
  [Identity.UNMANAGED]: 'unmanaged',
  [Identity.REMOTE_NODE]: 'remote-node',
  [Identity.SERVICE]: 'service',
};

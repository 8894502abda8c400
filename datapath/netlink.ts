// rtnetlink for the CNI plugin and the agent (the counterpart of the reference plugins' pkg/ip): one import
// for callers.
// Each concept lives in its own file; this module only re-exports them.
export { openRtnl, NetlinkError, isErrno, type Rtnl, type RtnlReply } from './rtnl.ts';
export {
  createVeth,
  createVxlan,
  linkByName,
  linkByIndex,
  listLinks,
  setLinkUp,
  setLinkMtu,
  setLinkAlias,
  deleteLink,
  type AliasedLink,
  type Link,
  type VethOptions,
  type VxlanOptions,
} from './link.ts';
export { addAddress, deleteAddress, listAddresses, type AddressSpec, type AddressInfo } from './address.ts';
export { addRoute, deleteRoute, listRoutes, type RouteSpec, type RouteInfo, type RouteScope } from './route.ts';
export { addNeighbor, deleteNeighbor, addFdbEntry, deleteFdbEntry, type NeighborSpec, type FdbKey, type FdbSpec } from './neighbor.ts';

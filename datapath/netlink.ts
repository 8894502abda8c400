// rtnetlink for the CNI plugin (the counterpart of the reference plugins' pkg/ip): one import for callers.
// Each concept lives in its own file; this module only re-exports them.
export { openRtnl, NetlinkError, isErrno, type Rtnl, type RtnlReply } from './rtnl.ts';
export {
  createVeth,
  linkByName,
  linkByIndex,
  setLinkUp,
  setLinkMtu,
  deleteLink,
  type Link,
  type VethOptions,
} from './link.ts';
export { addAddress, deleteAddress, listAddresses, type AddressSpec, type AddressInfo } from './address.ts';
export { addRoute, deleteRoute, listRoutes, type RouteSpec, type RouteInfo, type RouteScope } from './route.ts';
export { addNeighbor, deleteNeighbor, type NeighborSpec } from './neighbor.ts';

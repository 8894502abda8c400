// The rtnetlink ABI Sluice speaks, each number written once: message types, header flags, fixed header
// sizes and attribute types, under their names in the kernel's uapi headers (linux/netlink.h, rtnetlink.h,
// if_link.h, if_addr.h, neighbour.h, if.h). Pure constants, no I/O. The messages are built in the file of
// their kernel concept (link.ts, address.ts, route.ts, neighbor.ts); attributes are encoded by nlattr.ts.

// linux/netlink.h: struct nlmsghdr
/** nlmsg_type of an error or ACK reply (struct nlmsgerr). */
export const NLMSG_ERROR = 2;
/** nlmsghdr flag: dump all objects (NLM_F_ROOT|NLM_F_MATCH). */
export const NLM_F_DUMP = 0x300;
/** nlmsghdr flag for NEW requests: replace an existing object. */
export const NLM_F_REPLACE = 0x100;
/** nlmsghdr flag for NEW requests: fail with EEXIST if the object exists. */
export const NLM_F_EXCL = 0x200;
/** nlmsghdr flag for NEW requests: create the object if it does not exist. */
export const NLM_F_CREATE = 0x400;

// linux/rtnetlink.h: message types
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;

// Links: struct ifinfomsg + IFLA_* (linux/rtnetlink.h, if_link.h, if.h)
/** sizeof(struct ifinfomsg): family, pad, type, index (s32 at 4), flags (u32 at 8), change (u32 at 12). */
export const IFINFOMSG_BYTES = 16;
/** ifi_flags: administratively up. */
export const IFF_UP = 0x1;
/** Size of an interface name buffer, NUL included. */
export const IFNAMSIZ = 16;
/** Size of an interface alias buffer, NUL included. */
export const IFALIASZ = 256;
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_LINKINFO = 18;
export const IFLA_IFALIAS = 20;
export const IFLA_NET_NS_FD = 28;
export const IFLA_EXT_MASK = 29;
/** IFLA_EXT_MASK value asking the kernel to leave statistics out of link replies. */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;
/** Nested in IFLA_LINKINFO. */
export const IFLA_INFO_KIND = 1;
/** Nested in IFLA_LINKINFO: the kind's own attributes (VETH_INFO_*, IFLA_VXLAN_*). */
export const IFLA_INFO_DATA = 2;
/** veth's IFLA_INFO_DATA: the peer, as ifinfomsg + IFLA_* attributes. */
export const VETH_INFO_PEER = 1;
export const IFLA_VXLAN_ID = 1;
export const IFLA_VXLAN_LINK = 3;
export const IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_LEARNING = 7;
/** UDP destination port, network order. */
export const IFLA_VXLAN_PORT = 15;

// Addresses: struct ifaddrmsg + IFA_* (linux/if_addr.h)
/** sizeof(struct ifaddrmsg): family, prefixlen, flags, scope, index (u32 at 4). */
export const IFADDRMSG_BYTES = 8;
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_FLAGS = 8;
/** IFA_FLAGS: no duplicate address detection (IPv6). */
export const IFA_F_NODAD = 0x02;

// Routes: struct rtmsg + RTA_* (linux/rtnetlink.h)
/** sizeof(struct rtmsg): family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32 at 8). */
export const RTMSG_BYTES = 12;
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_TABLE = 15;
/** rtm_type of an ordinary route. */
export const RTN_UNICAST = 1;
/** rtm_protocol `ip route add` uses. */
export const RTPROT_BOOT = 3;
/** rtm_flags: the gateway is on the link even with no covering prefix. */
export const RTNH_F_ONLINK = 0x4;
/** The main routing table. */
export const RT_TABLE_MAIN = 254;
/** rtm_scope values (RT_SCOPE_*) by name. */
export const RT_SCOPES = { universe: 0, site: 200, link: 253, host: 254, nowhere: 255 } as const;

// Neighbours and bridge forwarding entries: struct ndmsg + NDA_* (linux/neighbour.h)
/** sizeof(struct ndmsg): family, pads, ifindex (s32 at 4), state (u16 at 8), flags (u8 at 10), type. */
export const NDMSG_BYTES = 12;
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
/** ndm_state: a static entry. */
export const NUD_PERMANENT = 0x80;
/** ndm_flags: a forwarding entry of the device itself (a VXLAN device's FDB), not of a bridge master. */
export const NTF_SELF = 0x02;
/** ndm_family of forwarding database (FDB) entries (linux/socket.h). */
export const AF_BRIDGE = 7;

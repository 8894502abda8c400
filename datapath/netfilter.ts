/**
 * The node's own netfilter hooks (BPF_PROG_TYPE_NETFILTER links, Linux 6.4+),
 * in the agent's network namespace, the node's:
 *
 *   service_egress  LOCAL_IN and POST_ROUTING: judges the egress policy of a
 *                   pod's flow to a Service address on the backend the stack
 *                   translated it to (from_pod marks such packets).
 *   vxlan_in        LOCAL_IN, in VXLAN mode only: the VXLAN port takes
 *                   packets from other nodes only.
 *
 * Each for IPv4 and IPv6, with BPF_F_NETFILTER_IP_DEFRAG so the programs see
 * whole datagrams. A link is pinned under <pinDir>/netfilter, so it outlives
 * the agent like the pods' TCX links; unpinning detaches it.
 */
import { existsSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { closeFd, isBpfError, netfilterLinkCreate, objGet, objPin, type NetfilterHook } from './libbpf.ts';
import { readLinkInfo, readProgramId } from './bpf-info.ts';

const NFPROTO_IPV4 = 2;
const NFPROTO_IPV6 = 10;
const NF_INET_LOCAL_IN = 1;
const NF_INET_POST_ROUTING = 4;
const BPF_F_NETFILTER_IP_DEFRAG = 1;
/**
 * After connection tracking (-200) and destination NAT (-100), so the real
 * backend is known; before source NAT (100), so the pod's address still is.
 * The kernel takes one BPF program per hook and priority (EBUSY for a
 * second), and test clusters run several agents in one namespace: each link
 * takes the first free priority from its base.
 */
const PRIORITY_SERVICE_EGRESS = 50;
const PRIORITY_VXLAN_IN = -90;
const PRIORITY_TRIES = 40;

/** The pinned programs the links run. */
export interface NetfilterPrograms {
  serviceEgress: string;
  vxlanIn: string;
}

interface LinkSpec {
  name: string;
  program: keyof NetfilterPrograms;
  hook: NetfilterHook;
}

function specs(vxlan: boolean): LinkSpec[] {
  const families = [
    ['ipv4', NFPROTO_IPV4],
    ['ipv6', NFPROTO_IPV6],
  ] as const;
  const hooks = [
    ['local-in', NF_INET_LOCAL_IN],
    ['post-routing', NF_INET_POST_ROUTING],
  ] as const;
  const out: LinkSpec[] = [];
  for (const [family, pf] of families) {
    const at = (hooknum: number, priority: number) => ({ pf, hooknum, priority, flags: BPF_F_NETFILTER_IP_DEFRAG });
    for (const [hookName, hooknum] of hooks) {
      out.push({ name: `service-egress-${family}-${hookName}`, program: 'serviceEgress', hook: at(hooknum, PRIORITY_SERVICE_EGRESS) });
    }
    if (vxlan) out.push({ name: `vxlan-in-${family}`, program: 'vxlanIn', hook: at(NF_INET_LOCAL_IN, PRIORITY_VXLAN_IN) });
  }
  return out;
}

/** Options for syncNetfilterLinks. */
export interface NetfilterLinksOptions {
  /** <pinDir>/netfilter. */
  dir: string;
  programs: NetfilterPrograms;
  /** Whether the node uses the VXLAN overlay (vxlan_in is attached only then). */
  vxlan: boolean;
  /** The programs were loaded just now: links to older ones are replaced. */
  reload: boolean;
}

/**
 * Makes the pinned links exactly the ones this node needs: attaches the
 * missing ones, and removes those of a mode the node no longer runs in, and
 * those running another program than the pinned one (all of them on reload). Returns the names attached and removed.
 */
export function syncNetfilterLinks(options: NetfilterLinksOptions): { attached: string[]; removed: string[] } {
  const { dir, programs } = options;
  mkdirSync(dir, { recursive: true });
  const wanted = specs(options.vxlan);
  const names = new Set(wanted.map((s) => s.name));
  const removed: string[] = [];
  // A link running another program than the one pinned (left by an agent that stopped before it
  // replaced them, e.g. after a map migration) is replaced as on a reload.
  const programOf = new Map(wanted.map((s) => [s.name, programId(programs[s.program])]));
  for (const pinned of readdirSync(dir)) {
    if (names.has(pinned) && !options.reload && linkProgramId(join(dir, pinned)) === programOf.get(pinned)) continue;
    unlinkSync(join(dir, pinned));
    removed.push(pinned);
  }
  const attached: string[] = [];
  for (const spec of wanted) {
    const pin = join(dir, spec.name);
    if (existsSync(pin)) continue;
    attach(programs[spec.program], spec.hook, pin, spec.name);
    attached.push(spec.name);
  }
  return { attached, removed };
}

function programId(progPinPath: string): number {
  const fd = objGet(progPinPath, 'program');
  try {
    return readProgramId(fd, progPinPath);
  } finally {
    closeFd(fd);
  }
}

function linkProgramId(linkPinPath: string): number {
  const fd = objGet(linkPinPath, 'link');
  try {
    return readLinkInfo(fd, linkPinPath).progId;
  } finally {
    closeFd(fd);
  }
}

/** A pinned netfilter link, as the kernel describes it. */
export interface NetfilterLinkInfo extends NetfilterHook {
  name: string;
  progId: number;
}

/** The netfilter links pinned in dir (e.g. for `sluice status`, and tests). */
export function netfilterLinks(dir: string): NetfilterLinkInfo[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .sort()
    .map((name) => {
      const fd = objGet(join(dir, name), 'link');
      try {
        const info = readLinkInfo(fd, `netfilter link ${name}`);
        if (info.netfilter === undefined) throw new Error(`${join(dir, name)} is not a netfilter link`);
        return { name, progId: info.progId, ...info.netfilter };
      } finally {
        closeFd(fd);
      }
    });
}

function attach(progPinPath: string, hook: NetfilterHook, linkPinPath: string, name: string): void {
  const progFd = objGet(progPinPath, 'program');
  try {
    const linkFd = createAtFreePriority(progFd, hook, name);
    try {
      objPin(linkFd, linkPinPath, `netfilter link ${name}`);
    } finally {
      closeFd(linkFd);
    }
  } finally {
    closeFd(progFd);
  }
}

function createAtFreePriority(progFd: number, hook: NetfilterHook, name: string): number {
  for (let i = 0; ; i++) {
    try {
      return netfilterLinkCreate(progFd, { ...hook, priority: hook.priority + i }, `attach netfilter link ${name} (priority ${hook.priority + i})`);
    } catch (err: unknown) {
      if (!isBpfError(err, 'EBUSY') || i + 1 >= PRIORITY_TRIES) throw err;
    }
  }
}

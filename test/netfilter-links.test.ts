/**
 * The agent's netfilter links (datapath/netfilter.ts) against the real
 * kernel: attached once, kept across a restart, replaced on a reload, the
 * VXLAN one only in VXLAN mode, and gone with the datapath's pins.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBpffs } from '../datapath/bpffs.ts';
import { bpfObjectPath } from '../datapath/bpf-object.ts';
import { loadDatapath, removeDatapath, type Datapath } from '../datapath/loader.ts';
import { netfilterLinks, syncNetfilterLinks } from '../datapath/netfilter.ts';

const pinDir = `/sys/fs/bpf/sluice-test-nf-${randomBytes(3).toString('hex')}`;

function progId(pinPath: string): number {
  return (JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'pinned', pinPath], { encoding: 'utf8' })) as { id: number }).id;
}

/** Every link the kernel has that runs the program pinned at pinPath (bpftool 7.1 names no netfilter details). */
function kernelLinksOf(pinPath: string): number {
  const id = progId(pinPath);
  return (JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { prog_id: number }[]).filter((l) => l.prog_id === id).length;
}

describe('netfilter links', () => {
  let datapath: Datapath;
  /** The pinned links running the program pinned at pinPath: "pf/hook" of each. */
  const linksOf = (pinPath: string) => {
    const id = progId(pinPath);
    return netfilterLinks(datapath.netfilterDir).filter((l) => l.progId === id).map((l) => `${l.pf}/${l.hooknum}`).sort();
  };

  beforeAll(() => {
    ensureBpffs();
    datapath = loadDatapath({ pinDir, objectBytes: readFileSync(bpfObjectPath()) });
  });
  afterAll(() => {
    datapath.close();
    removeDatapath(pinDir);
  });

  it('attaches service_egress at LOCAL_IN and POST_ROUTING and vxlan_in at LOCAL_IN, for IPv4 and IPv6', () => {
    const sync = syncNetfilterLinks({ dir: datapath.netfilterDir, programs: datapath.progPaths, vxlan: true, reload: true });
    expect(sync.attached).toHaveLength(6);
    // pf 2 = IPv4, 10 = IPv6; hook 1 = LOCAL_IN, 4 = POST_ROUTING.
    expect(linksOf(datapath.progPaths.serviceEgress)).toEqual(['10/1', '10/4', '2/1', '2/4']);
    expect(linksOf(datapath.progPaths.vxlanIn)).toEqual(['10/1', '2/1']);
    expect(kernelLinksOf(datapath.progPaths.serviceEgress)).toBe(4);
    expect(netfilterLinks(datapath.netfilterDir).every((l) => l.flags === 1)).toBe(true); // BPF_F_NETFILTER_IP_DEFRAG
  });

  it('a restart keeps them; leaving VXLAN mode removes vxlan_in; a reload replaces them', () => {
    expect(syncNetfilterLinks({ dir: datapath.netfilterDir, programs: datapath.progPaths, vxlan: true, reload: false })).toEqual({ attached: [], removed: [] });
    const native = syncNetfilterLinks({ dir: datapath.netfilterDir, programs: datapath.progPaths, vxlan: false, reload: false });
    expect(native.removed.sort()).toEqual(['vxlan-in-ipv4', 'vxlan-in-ipv6']);
    expect(linksOf(datapath.progPaths.vxlanIn)).toEqual([]);
    const reload = syncNetfilterLinks({ dir: datapath.netfilterDir, programs: datapath.progPaths, vxlan: false, reload: true });
    expect(reload.removed).toHaveLength(4);
    expect(reload.attached).toHaveLength(4);
    expect(linksOf(datapath.progPaths.serviceEgress)).toHaveLength(4);
  });

  it('removing the datapath detaches them', () => {
    const id = progId(datapath.progPaths.serviceEgress);
    removeDatapath(pinDir);
    const links = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { prog_id: number }[];
    expect(links.filter((l) => l.prog_id === id)).toEqual([]);
  });
});

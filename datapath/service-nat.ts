/**
 * Hands the socket load balancer's frontend and backend maps to the
 * datapath's per-packet Service translation (bpf/service-nat.h): from_pod
 * reaches them through one-slot map-in-map arrays (lb_services_ref,
 * lb_backends_ref) pinned with the datapath's maps. The load balancer's maps
 * belong to another object and may be replaced (resized) by a later agent,
 * so the slots are written on every start rather than bound at load time.
 */
import { join } from 'node:path';
import { BpfMap } from './bpf-map.ts';

/** The datapath's pinned ref maps: key a __u32 slot (0), value a map fd (read back as a map id). */
const REFS = { lb_services: 'lb_services_ref', lb_backends: 'lb_backends_ref' } as const;

/** Points the datapath pinned under datapathMapsDir at these frontend and backend maps; throws BpfError if the kernel refuses. */
export function linkServiceNat(datapathMapsDir: string, maps: { lb_services: BpfMap; lb_backends: BpfMap }): void {
  const slot = Buffer.alloc(4);
  for (const [name, ref] of Object.entries(REFS) as [keyof typeof REFS, string][]) {
    const outer = BpfMap.openPinned(join(datapathMapsDir, ref), ref, 4, 4);
    try {
      const fd = Buffer.alloc(4);
      fd.writeUInt32LE(maps[name].fd);
      outer.update(slot, fd);
    } finally {
      outer.close();
    }
  }
}

/** Empties the slots: from_pod translates nothing (the load balancer's maps are gone). */
export function unlinkServiceNat(datapathMapsDir: string): void {
  for (const ref of Object.values(REFS)) {
    const outer = BpfMap.openPinned(join(datapathMapsDir, ref), ref, 4, 4);
    try {
      outer.delete(Buffer.alloc(4));
    } finally {
      outer.close();
    }
  }
}

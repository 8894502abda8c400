/**
 * Attaching pinned programs to a device's tc hooks with TCX links (Linux
 * 6.6+). A link pinned on bpffs keeps the program attached after the
 * attaching process exits; unpinning it (or deleting the device) detaches it.
 *
 * Not done: the clsact + cls_bpf fallback for kernels without TCX. Sluice
 * requires Linux 6.6 or newer (README.md, "On a Kubernetes cluster"); on an
 * older kernel attachTcx throws a BpfError with code EINVAL, which names the
 * cause.
 */
import { existsSync, unlinkSync } from 'node:fs';
import { BPF_TCX_EGRESS, BPF_TCX_INGRESS, closeFd, isBpfError, linkCreate, linkDetach, objGet, objPin } from './libbpf.ts';
import { BPF_LINK_TYPE_TCX, readLinkInfo } from './bpf-info.ts';

/** Which tc hook of the device. */
export type TcxDirection = 'ingress' | 'egress';

/** Options for attachTcx. */
export interface AttachTcxOptions {
  ifindex: number;
  /** A pinned program, e.g. Datapath.progPaths.fromPod. */
  progPinPath: string;
  direction: TcxDirection;
  /** Where to pin the link (on bpffs); must not exist yet. */
  linkPinPath: string;
}

/** Attaches the pinned program to the device's hook and pins the link; throws BpfError (EEXIST if linkPinPath is taken). */
export function attachTcx(options: AttachTcxOptions): void {
  const { ifindex, progPinPath, direction, linkPinPath } = options;
  const attachType = direction === 'ingress' ? BPF_TCX_INGRESS : BPF_TCX_EGRESS;
  const progFd = objGet(progPinPath, 'program');
  try {
    const linkFd = linkCreate(progFd, ifindex, attachType, `attach ${progPinPath} to ifindex ${ifindex} ${direction}`);
    try {
      // Until it is pinned the link lives only in linkFd: a failed pin detaches it on close.
      objPin(linkFd, linkPinPath, `${direction} link of ifindex ${ifindex}`);
    } finally {
      closeFd(linkFd);
    }
  } finally {
    closeFd(progFd);
  }
}

/** Detaches the link pinned at linkPinPath and removes the pin; absent pin → no-op. */
export function detachTcx(linkPinPath: string): void {
  let linkFd: number;
  try {
    linkFd = objGet(linkPinPath, 'link');
  } catch (err: unknown) {
    if (isBpfError(err, 'ENOENT')) return;
    throw err;
  }
  try {
    // Detach explicitly: another fd holder (e.g. a running `bpftool`) must not keep it attached.
    linkDetach(linkFd, `detach link ${linkPinPath}`);
  } catch (err: unknown) {
    // ENOLINK: already detached because its device was deleted.
    if (!isBpfError(err, 'ENOLINK')) throw err;
  } finally {
    closeFd(linkFd);
  }
  if (existsSync(linkPinPath)) unlinkSync(linkPinPath);
}

/** True if a TCX link is pinned at linkPinPath and still attached to a device. */
export function tcxLinkAttached(linkPinPath: string): boolean {
  let linkFd: number;
  try {
    linkFd = objGet(linkPinPath, 'link');
  } catch (err: unknown) {
    if (isBpfError(err, 'ENOENT')) return false;
    throw err;
  }
  try {
    const info = readLinkInfo(linkFd, `link ${linkPinPath}`);
    // The kernel zeroes the ifindex once the device is gone.
    return info.type === BPF_LINK_TYPE_TCX && (info.tcx?.ifindex ?? 0) !== 0;
  } finally {
    closeFd(linkFd);
  }
}

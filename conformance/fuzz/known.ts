/**
 * Disagreements the fuzzer found that are datapath bugs already filed, with
 * the fix under way (issue 30). A disagreement matching one is reported as
 * known, with its count and one reproducer, and does not fail the run; one
 * matching none does. Remove an entry once its fix is in: the run then says
 * when a known issue was not seen at all.
 */
import type { FrameVerdict } from './oracle.ts';

/** A filed datapath bug, recognised by the packets that show it. */
export interface KnownIssue {
  id: string;
  /** Where it is filed and what it is. */
  title: string;
  matches: (v: FrameVerdict) => boolean;
}

export const KNOWN_ISSUES: KnownIssue[] = [
  {
    id: 'icmp-error-third-party',
    title: 'issue 30, "ICMP errors carry data out of an isolated pod": an ICMP error from a pod that never received the quoted packet passes',
    matches: (v) =>
      v.spec.l4.p === 'icmp-error' && !v.spec.spoof && !v.spec.forgedMac && !('pod' in v.spec.l4.quote.dst && v.spec.l4.quote.dst.pod === v.spec.from),
  },
  {
    id: 'ipv6-after-fragment-header',
    title:
      'issue 30, "The IPv6 parser follows a Fragment header to the next header": behind a Fragment header, an extension header is taken for the transport ' +
      '(protocol 60, 0 or 43, no ports), so policy judges the wrong protocol (it can allow what the evaluator denies) and a Routing header there is not seen',
    matches: (v) => {
      const ext = v.spec.ext ?? [];
      return v.spec.family === 6 && ext.includes('frag') && ext.indexOf('frag') < ext.length - 1;
    },
  },
];

/** The known issue a disagreement shows, if any. */
export function knownIssueOf(v: FrameVerdict): KnownIssue | undefined {
  return KNOWN_ISSUES.find((k) => k.matches(v));
}

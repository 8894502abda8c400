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

/**
 * On main before d6f69d8 the fuzzer found two, both of issue 30 and
 * both fixed by that commit: an ICMP error from a pod that never received the
 * quoted packet passed ("ICMP errors carry data out of an isolated pod"; the
 * short run saw 46 such frames), and behind an IPv6 Fragment header the next
 * extension header was taken for the transport (protocol 60, 0 or 43, no
 * ports), so policy judged the wrong protocol, allowing some packets the
 * evaluator denies, and a Routing header there was not seen (20 frames).
 * An entry looks like:
 *   { id: 'icmp-error-third-party', title: 'issue 30, ...',
 *     matches: (v) => v.spec.l4.p === 'icmp-error' && ... }
 */
export const KNOWN_ISSUES: KnownIssue[] = [
  {
    id: 'icmp-untracked-later-fragments',
    title:
      'issue 30 (found by the fuzzer, for the lead): ICMP that is neither echo nor error is "judged packet by packet", but its later fragments ' +
      'become a tracked flow: frag_later() gives a later fragment protocol and ports (type<<8|code both ways) but not parse_l4\'s "untracked", so ' +
      'it is judged and recorded in conntrack. Round 2 of seed 5: z/a sends x/a a fragmented address-mask request (type 17), allowed; its later ' +
      'fragments leave the entry z/a->x/a, ICMP, 0x1100/0x1100. Round 3 denies ICMP from x/a to z/a, yet the later fragments of x/a\'s type 17 ' +
      'datagram to z/a pass as that entry\'s replies (re-judged as z/a->x/a, still allowed); the way back that attack-icmp rules out for whole ' +
      'packets. Reproduce: node conformance/fuzz/main.ts --seed 5 --per-round 5000 --round 2 --packets 10000 (2 frames, every time)',
    matches: (v) => v.spec.l4.p === 'icmp' && v.frame.role === 'later',
  },
];

/** The known issue a disagreement shows, if any. */
export function knownIssueOf(v: FrameVerdict, known: readonly KnownIssue[] = KNOWN_ISSUES): KnownIssue | undefined {
  return known.find((k) => k.matches(v));
}

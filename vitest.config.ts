import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// Two projects. `unit`: pure logic that needs no root, no kernel state and no
// `make all` (`make unit`, `vitest run --project unit`), files in parallel, done
// in seconds. `kernel`: everything else; namespaces, veths, bpffs, BPF programs,
// local clusters and the dist/ executables on a 2-core machine, so one file at
// a time, never beside a unit file. `make test` runs both in one `vitest run`:
// unit first, then kernel.
//
// A test is `unit` only when listed here; a new file is `kernel` until it is
// shown to need none of the above (the safe side).
const UNIT = [
  'test/abi.test.ts', // builds its own copy of the eBPF object in a temporary directory (clang, bpftool; no root)
  'test/awaiting-labels-status.test.ts',
  'test/cni-del-queue.test.ts',
  'test/cni-spec.test.ts',
  'test/conformance-netpol-evaluator.test.ts',
  'test/datapath-sync.test.ts',
  'test/datastore-local-dir.test.ts',
  'test/datastore-kubernetes.test.ts',
  'test/endpoints.test.ts',
  'test/explain.test.ts',
  'test/flow-metrics.test.ts',
  'test/flow-records.test.ts',
  'test/flows-l7.test.ts',
  'test/fuzz-grammar.test.ts', // runs /usr/bin/python3 (scapy) to build frames; sends nothing, no root
  'test/install-manifests.test.ts', // reads install/; statfs of /sys/fs/bpf, mounts nothing
  'test/ipam.test.ts',
  'test/ipam-clock.test.ts', // reads /proc/uptime and the boot id
  'test/ipam-rebuild.test.ts', // lists this namespace's links and routes over rtnetlink (read-only, no root)
  'test/numbering-rebuild.test.ts',
  'test/store-schema.test.ts',
  'test/store-recovery-metrics.test.ts',
  'test/store-rebuild-plans.test.ts',
  'test/map-migration.test.ts',
  'test/multi-node-plan.test.ts',
  'test/policy.test.ts',
  'test/policy-incremental.test.ts',
  'test/policy-change-feed.test.ts', // a temporary directory of object files; no root
  'test/datapath-sync-incremental.test.ts',
  'test/policy-check.test.ts',
  'test/policy-errors-kubernetes.test.ts',
  'test/policy-unknown-labels.test.ts',
  'test/registration-check.test.ts',
  'test/security-actions.test.ts',
  'test/security-rules.test.ts',
  'test/service-lb-abi.test.ts', // builds its own copy of the socket load-balancing object (clang, bpftool; no root)
  'test/services-start.test.ts',
  'test/services-sync.test.ts',
  'test/services-table.test.ts',
  'test/security-abi.test.ts', // builds its own copy of the security object, like trace-abi (clang, bpftool; no root)
  'test/security-sensor-logic.test.ts',
  'test/status-command.test.ts',
  'test/tcp-health-report.test.ts',
  'test/trace-abi.test.ts', // builds its own copy of the tracing object, like abi.test.ts (clang, bpftool; no root)
  'test/ui-flow-view.test.ts',
  'test/ui-service-map.test.ts',
];

// A renamed or moved unit file must be renamed here too, not silently turn `kernel`.
const missing = UNIT.filter((f) => !existsSync(join(import.meta.dirname, f)));
if (missing.length > 0) throw new Error(`vitest.config.ts lists unit test files that do not exist: ${missing.join(', ')}`);

const EXCLUDE = ['**/node_modules/**', 'dist/**'];
// As before the split, for both: a unit file may wait on a build (abi) or a fake API server's timers.
const TIMEOUTS = { testTimeout: 60_000, hookTimeout: 60_000 };

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: UNIT,
          exclude: EXCLUDE,
          fileParallelism: true,
          // Every core (vitest's default leaves one idle: a single worker on 2 cores).
          maxWorkers: '100%',
          ...TIMEOUTS,
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['**/*.test.ts'],
          exclude: [...EXCLUDE, ...UNIT],
          // Not two at a time yet. What stands in the way (measured 2026-12-08): every agent attaches
          // its socket load balancer at the cgroup v2 root (it sees every socket of the machine) and all
          // test clusters use the default --service-cidr 10.96.0.0/12, so two clusters hand out the same
          // ClusterIPs; pod CIDRs are random /24s (10.200-249.x), and two clusters on one /24 would judge
          // each other's pods (service_egress in the host netns acts on any packet its endpoints map
          // knows); netfilter-links and datapath-migration attach netfilter programs (IP_DEFRAG) in the
          // host netns; security-sensor turns kernel.bpf_stats_enabled on and off; and files with fixed
          // windows (attack-fragments' 8 s fragment timeout, install-cni's reader loop count, probes
          // with an 800 ms timeout and no retry in multi-node) already fail at load 15. Vitest also runs
          // one worker count per groupOrder, so a serial project cannot run beside another serial one.
          fileParallelism: false,
          // A group after unit's: the kernel files start once every unit file is done.
          sequence: { groupOrder: 1 },
          ...TIMEOUTS,
        },
      },
    ],
  },
});

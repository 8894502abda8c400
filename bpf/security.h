/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel ABI of the runtime security object (security.c): its event
 * records, enforcement map keys and values, and their limits. Mirrored in
 * exactly one TypeScript module, datapath/security-abi.ts;
 * test/security-abi.test.ts compares the two through BTF.
 *
 * Every record and map is about a process's network namespace inode
 * (task->nsproxy->net_ns->ns.inum, a __u32), what stat(2) gives for the netns
 * path the CNI plugin registered: the agent finds the pod by it. The host's
 * own inode (security_config.host_netns, written by the agent) means "host".
 */
#ifndef SLUICE_SECURITY_H
#define SLUICE_SECURITY_H

#include <linux/types.h>

/* Enums, not #defines: BTF carries their values, so the mirror is checked. */
enum sluice_security_limits {
	SLUICE_SEC_COMM_LEN = 16,
	/* Bytes of a path (exec filename, open path), NUL included; longer ones are cut. */
	SLUICE_SEC_PATH_LEN = 256,
	/* Bytes of an exec's argument area (NUL-separated argv); longer ones are cut and flagged. */
	SLUICE_SEC_ARGS_LEN = 512,
	/* Bytes of a kill key's binary name (the executed file's own name), NUL included. */
	SLUICE_SEC_KILL_NAME_LEN = 64,
	/* Ports in one deny-connect entry. */
	SLUICE_SEC_MAX_PORTS = 16,
	SLUICE_SEC_MAX_KILL = 4096,
	SLUICE_SEC_MAX_CONNECT_RULES = 4096,
	/* Threads inside a setuid-family syscall at once (their uids before it). */
	SLUICE_SEC_MAX_PENDING_SETUID = 8192,
	SLUICE_SEC_RINGBUF_BYTES = 8 << 20,
	/*
	 * Event budgets (struct sec_budget): one token bucket per network
	 * namespace and kind of event (enum sluice_sec_bucket), shared by all
	 * CPUs, refilled at PER_SEC up to BURST. A pod's flood spends only its own
	 * budget. A pod's burst of opens and connects fits in the ring buffer
	 * several times over, so one pod cannot fill it for the others either.
	 * The host's namespace (security_config.host_netns) has a larger one.
	 */
	SLUICE_SEC_POD_EVENTS_PER_SEC = 5000,
	SLUICE_SEC_POD_EVENTS_BURST = 5000,
	SLUICE_SEC_HOST_EVENTS_PER_SEC = 20000,
	SLUICE_SEC_HOST_EVENTS_BURST = 20000,
	/* Entries of security_budget (namespaces x kinds); the least recently used one goes when it is full. */
	SLUICE_SEC_MAX_BUDGETS = 8192,
};

/* sec_header.type: which record follows the header. */
enum sluice_sec_event_type {
	SLUICE_SEC_EXEC = 1,
	SLUICE_SEC_EXIT = 2,
	SLUICE_SEC_OPEN = 3,
	SLUICE_SEC_SETUID = 4,
	SLUICE_SEC_CONNECT = 5,
};

/* sec_header.flags. */
enum sluice_sec_event_flag {
	/* exec: the kill map matched and SIGKILL was sent; the binary never ran. */
	SLUICE_SEC_F_KILLED = 1,
	/* connect: refused with EPERM by the deny-connect map. */
	SLUICE_SEC_F_DENIED = 2,
	/* exec: the argument area was longer than SLUICE_SEC_ARGS_LEN. */
	SLUICE_SEC_F_ARGS_CUT = 4,
	/* open: the syscall was openat2 (flags from its struct open_how). */
	SLUICE_SEC_F_OPENAT2 = 8,
	/* exec, open: a path relative to the cwd, made absolute by the program (the cwd as the process sees it). */
	SLUICE_SEC_F_CWD_RESOLVED = 16,
	/*
	 * connect (with DENIED): not a connect but a socket() refused at creation
	 * by cgroup/sock_create: a raw (SOCK_RAW) or SCTP socket in a namespace a
	 * deny-connect entry applies to. port and addr are 0; protocol is the
	 * socket's (IPPROTO_SCTP for SCTP, IPPROTO_RAW's 255 or another for raw).
	 */
	SLUICE_SEC_F_SOCKET = 32,
};

/* security_config.flags: what is reported of host processes besides exec, exit and setuid. */
enum sluice_sec_config_flag {
	SLUICE_SEC_CFG_HOST_OPENS = 1,
	SLUICE_SEC_CFG_HOST_CONNECTS = 2,
};

/*
 * sec_budget_key.bucket: each kind of event spends its own budget, so that a
 * flood of opens (cheap to cause) cannot hide an exec of the same pod.
 */
enum sluice_sec_bucket {
	/* exec, exit, setuid, connect. */
	SLUICE_SEC_BUCKET_PROCESS,
	/* open, openat2. */
	SLUICE_SEC_BUCKET_FILES,
	SLUICE_SEC_BUCKET_MAX,
};

/* Indexes of the per-CPU array security_stats. */
enum sluice_sec_stat {
	/* Events dropped because their namespace's budget was spent (per namespace: struct sec_budget). */
	SLUICE_SEC_STAT_LOST_BUDGET,
	/* Events dropped because the ring buffer was full (the agent reads too slowly). */
	SLUICE_SEC_STAT_LOST_RINGBUF,
	/* Setuid-family calls not followed because security_pending_setuid was full. */
	SLUICE_SEC_STAT_LOST_SETUID,
	/* Execs killed, connects (and raw or SCTP sockets) denied, counted even when their event was lost. */
	SLUICE_SEC_STAT_KILLED,
	SLUICE_SEC_STAT_DENIED,
	SLUICE_SEC_STAT_MAX,
};

/* Map security_budget (LRU hash): a namespace's budget for one kind of event. */
struct sec_budget_key {
	__u32 netns;
	/* enum sluice_sec_bucket. */
	__u32 bucket;
};

/*
 * Updated by every CPU at once with atomic operations (tracing programs may
 * not take a bpf_spin_lock): the refill is claimed by a compare-and-swap of
 * last_ns, a token taken by a fetch-and-add on tokens. The losses are this
 * namespace's share of security_stats' (the agent reads them per pod; an
 * entry the LRU evicts takes its counts with it, the totals stay exact).
 */
struct sec_budget {
	__s64 tokens;
	/* bpf_ktime_get_ns() up to which tokens were added. */
	__u64 last_ns;
	/* Events dropped because this budget was spent, and because the ring buffer was full. */
	__u64 lost_budget;
	__u64 lost_ringbuf;
};

/* The start of every record in the ring buffer security_events. */
struct sec_header {
	/* bpf_ktime_get_ns(): CLOCK_MONOTONIC. */
	__u64 time_ns;
	__u32 type;
	__u32 flags;
	__u32 netns;
	/* Thread-group id (the pid people see) and thread id, as the host sees them. */
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	/* Real and effective uid, as the host's user namespace sees them. */
	__u32 uid;
	__u32 euid;
	char comm[SLUICE_SEC_COMM_LEN];
};

/* SLUICE_SEC_EXEC, from tp_btf/sched_process_exec: after the new image is in place, before it runs. */
struct sec_exec {
	struct sec_header h;
	char pcomm[SLUICE_SEC_COMM_LEN];
	/* Bytes of filename (NUL excluded) and of args used. */
	__u32 filename_len;
	__u32 args_len;
	/* bprm->filename: the path execve() was given, a relative one made absolute (SLUICE_SEC_F_CWD_RESOLVED). */
	char filename[SLUICE_SEC_PATH_LEN];
	/* The new image's argv area, NUL-separated. */
	char args[SLUICE_SEC_ARGS_LEN];
};

/* SLUICE_SEC_EXIT, from tp_btf/sched_process_exit, once per process (when its last thread exits). */
struct sec_exit {
	struct sec_header h;
	/* task->exit_code: (code << 8) | signal, as wait(2) encodes it. */
	__u32 exit_code;
	__u32 reserved;
};

/* SLUICE_SEC_OPEN, from the syscalls/sys_enter_openat and sys_enter_openat2 tracepoints. */
struct sec_open {
	struct sec_header h;
	/* The directory fd a relative path is relative to (AT_FDCWD: -100). */
	__s32 dfd;
	__u32 path_len;
	__u64 flags;
	char path[SLUICE_SEC_PATH_LEN];
};

/* SLUICE_SEC_SETUID, from sys_exit of setuid, setreuid and setresuid: a uid or euid became 0 from non-zero. */
struct sec_setuid {
	struct sec_header h;
	/* Before the call (the header has after). */
	__u32 old_uid;
	__u32 old_euid;
	/* The syscall number. */
	__u32 syscall;
	__u32 reserved;
};

/*
 * SLUICE_SEC_CONNECT, from cgroup connect4/connect6 at the root of the cgroup
 * v2 hierarchy (and a refused raw or SCTP socket: SLUICE_SEC_F_SOCKET).
 */
struct sec_connect {
	struct sec_header h;
	/* AF_INET (2) or AF_INET6 (10). */
	__u16 family;
	/* Host order. */
	__u16 port;
	/* IPPROTO_TCP, IPPROTO_UDP (with SLUICE_SEC_F_SOCKET: the refused socket's protocol). */
	__u32 protocol;
	/* An IPv4 address in the first 4 bytes. */
	__u8 addr[16];
};

/*
 * Map security_config (array of one): written by the agent. Until host_netns
 * is set, no open or connect is reported and no wildcard (netns 0) entry of
 * security_kill or security_connect applies: any netns could be the host's.
 */
struct security_config {
	__u32 host_netns;
	__u32 flags;
};

/*
 * Map security_kill: an exec whose (network namespace, binary name) has an
 * entry gets SIGKILL from the exec hook, before the new image runs one
 * instruction. netns 0: every pod's namespace, never the host's.
 *
 * The name is that of the file the kernel executed (bprm->file's dentry, at
 * most 63 bytes), or the name it was run as (its comm: the last part of the
 * path asked for, at most 15 bytes, as proc.name says). The first catches the
 * binary run through a symlink of another name (the link's target is what is
 * executed), from any directory, by a relative path, or with argv[0] set to
 * anything; the second a multi-call binary's applet (busybox run as nc). Neither catches a copy or
 * a hard link under another name, the binary run by an interpreter
 * (ld.so /usr/bin/nc, python -c), or a script: a #! script's key is its
 * interpreter's name (sh), since that is the file executed.
 */
struct kill_key {
	__u32 netns;
	char name[SLUICE_SEC_KILL_NAME_LEN];
};

/* The value: the agent's number for the rule (not read by the programs). */
struct kill_value {
	__u32 rule;
};

/* connect_rule.mode. */
enum sluice_sec_connect_mode {
	/* Refuse connects to a port not in ports[] (an allow list). */
	SLUICE_SEC_CONNECT_ALLOW_ONLY = 1,
	/* Refuse connects to a port in ports[]. */
	SLUICE_SEC_CONNECT_DENY = 2,
};

/*
 * Map security_connect: network namespace inode (0: every pod's, never the
 * host's) -> which TCP and UDP connect() calls (IPv4 and IPv6), and UDP
 * datagrams sent to an address (sendto, sendmsg), are refused with EPERM. An
 * exact entry wins over the wildcard one. Raw sockets (SOCK_RAW) and SCTP
 * sockets pass by the connect and sendmsg hooks, so a namespace with an entry
 * may not create them at all (cgroup/sock_create refuses socket() with EPERM,
 * whatever the ports): with one it could send to any port. Not covered:
 * AF_PACKET sockets (the kernel runs no cgroup hook for them), a socket made
 * before the entry, or in another netns and passed in (the hooks judge by the
 * calling task's netns).
 */
struct connect_rule {
	__u32 mode;
	__u32 nports;
	__u16 ports[SLUICE_SEC_MAX_PORTS];
	__u32 rule;
};

#endif /* SLUICE_SECURITY_H */

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Sluice's runtime security sensor (issue 19): process, file, privilege and
 * connect events with the network namespace inode that names the pod, and
 * two immediate actions the agent compiles from rules into maps. A third
 * object beside the datapath and the tracing object, loaded and pinned by
 * the agent under <bpf-dir>/security (datapath/security-loader.ts). Layouts:
 * security.h.
 *
 *   sec_exec       tp_btf/sched_process_exec     exec events; kill (security_kill)
 *   sec_exit       tp_btf/sched_process_exit     exit status, once per process
 *   sec_openat     tracepoint sys_enter_openat   path as given, dfd, flags
 *   sec_openat2    tracepoint sys_enter_openat2  the same, flags from open_how
 *   sec_setuid_enter / sec_setuid_exit           tracepoints of setuid, setreuid,
 *                                                setresuid: a uid or euid that
 *                                                becomes 0 from non-zero
 *   sec_connect4 / sec_connect6                  cgroup connect hooks at the
 *                                                cgroup v2 root: events, deny-connect
 *   sec_sendmsg4 / sec_sendmsg6                  cgroup UDP sendmsg hooks: deny-connect
 *                                                for datagrams sent without a connect
 *   sec_sock_create                              cgroup/sock_create: deny-connect's raw
 *                                                and SCTP sockets, refused at socket()
 *
 * Only tp_btf, classic tracepoints and cgroup hooks: fentry, kprobes and BPF
 * LSM do not load on the kernels this runs on (see the loader's probe).
 * bpf_d_path is not allowed in tracepoints: a path relative to the cwd is
 * made absolute here by walking the cwd's dentries and mounts up to the
 * process's root (resolve_cwd); one relative to another directory fd, or a
 * cwd too deep, is left to the agent (/proc/<pid>/fd/<dfd>, /proc/<pid>/cwd).
 * sched_process_fork is not hooked: each event reads the parent from
 * task->real_parent.
 *
 * Cost: a process's netns inode is three dependent loads; an open of a host
 * process stops there unless the agent asked for host opens. Events share one
 * ring buffer behind token buckets per network namespace (a pod's flood
 * spends its own budget, not another pod's), one for opens and one for the
 * rest (an open flood must not hide an exec); every event dropped is counted
 * in security_stats and in its namespace's budget entry. Records are submitted without a wakeup (BPF_RB_NO_WAKEUP):
 * the agent polls on a timer, and a wakeup per event is most of an event's cost.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "security.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SIGKILL 9
#define AF_INET 2
#define AF_INET6 10

/* The kernel's structures, only the fields read here (CO-RE relocated against the running kernel). */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct nsproxy {
	struct net *net_ns;
} __attribute__((preserve_access_index));

typedef struct {
	unsigned int val;
} kuid_t;

struct cred {
	kuid_t uid;
	kuid_t euid;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	char comm[16];
	struct task_struct *real_parent;
	struct nsproxy *nsproxy;
	struct mm_struct *mm;
	const struct cred *cred;
	struct fs_struct *fs;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

/* The mount a vfsmount is embedded in (container_of): where it hangs in its parent. */
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root;
	struct path pwd;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
	const char *filename;
} __attribute__((preserve_access_index));

struct open_how {
	__u64 flags;
	__u64 mode;
	__u64 resolve;
};

/* The context of a syscalls/sys_enter_* tracepoint: the common fields, the number, then each argument in 8 bytes. */
struct sys_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SLUICE_SEC_RINGBUF_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} security_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_SEC_MAX_BUDGETS);
	__type(key, struct sec_budget_key);
	__type(value, struct sec_budget);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} security_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_SEC_STAT_MAX);
	__type(key, __u32); /* enum sluice_sec_stat (an enum key makes the kernel refuse the map's BTF) */
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} security_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct security_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} security_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_SEC_MAX_KILL);
	__type(key, struct kill_key);
	__type(value, struct kill_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} security_kill SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_SEC_MAX_CONNECT_RULES);
	__type(key, __u32);
	__type(value, struct connect_rule);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} security_connect SEC(".maps");

struct pending_setuid {
	__u32 uid;
	__u32 euid;
};

/* Thread id -> its uids at the entry of a setuid-family call, until its exit. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_SEC_MAX_PENDING_SETUID);
	__type(key, __u32);
	__type(value, struct pending_setuid);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} security_pending_setuid SEC(".maps");

/* Put the enums only used in constants into the BTF, where test/security-abi.test.ts reads them. */
const volatile enum sluice_security_limits sluice_sec_limits_btf_anchor = SLUICE_SEC_PATH_LEN;
const volatile enum sluice_sec_event_type sluice_sec_type_btf_anchor = SLUICE_SEC_EXEC;
const volatile enum sluice_sec_event_flag sluice_sec_flag_btf_anchor = SLUICE_SEC_F_KILLED;
const volatile enum sluice_sec_config_flag sluice_sec_config_btf_anchor = SLUICE_SEC_CFG_HOST_OPENS;
const volatile enum sluice_sec_connect_mode sluice_sec_mode_btf_anchor = SLUICE_SEC_CONNECT_DENY;
const volatile enum sluice_sec_stat sluice_sec_stat_btf_anchor = SLUICE_SEC_STAT_MAX;
const volatile enum sluice_sec_bucket sluice_sec_bucket_btf_anchor = SLUICE_SEC_BUCKET_MAX;
/* And the records, only ever reached through ring buffer pointers (a pointer alone leaves only a forward declaration). */
struct sec_records_btf_anchor {
	struct sec_exec exec;
	struct sec_exit exit;
	struct sec_open open;
	struct sec_setuid setuid;
	struct sec_connect connect;
};
const volatile struct sec_records_btf_anchor sluice_sec_records_btf_anchor;

static __always_inline void count_stat(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&security_stats, &stat);

	if (n)
		*n += 1;
}

static __always_inline __u32 netns_of(struct task_struct *task)
{
	return BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
}

static __always_inline struct security_config *config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&security_config, &zero);
}

#define NS_PER_SEC 1000000000ull

/* The budget of netns for this kind of event, made full the first time the namespace is seen (or after the LRU evicted it). */
static __always_inline struct sec_budget *budget_of(__u32 netns, __u32 bucket, __u64 burst, __u64 now)
{
	struct sec_budget_key key = { .netns = netns, .bucket = bucket };
	struct sec_budget *b = bpf_map_lookup_elem(&security_budget, &key);
	struct sec_budget fresh = { .tokens = burst, .last_ns = now };

	if (b)
		return b;
	/* Another CPU may create it first: NOEXIST keeps theirs. */
	bpf_map_update_elem(&security_budget, &key, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&security_budget, &key);
}

/*
 * Takes one token from netns's budget of that kind: NULL when there was one,
 * else the budget to charge the loss to (or NULL, and the event let through,
 * when the map could not hold it: a full LRU evicts, so that is not expected).
 * Lock-free: one CPU wins the refill of an interval (cmpxchg of last_ns); a
 * token is taken by fetch-and-add and given back when there was none.
 */
static __always_inline int event_allowed(__u32 netns, __u32 bucket, struct sec_budget **charge)
{
	struct security_config *c = config();
	int host = c && c->host_netns != 0 && c->host_netns == netns;
	__u64 rate = host ? SLUICE_SEC_HOST_EVENTS_PER_SEC : SLUICE_SEC_POD_EVENTS_PER_SEC;
	__u64 burst = host ? SLUICE_SEC_HOST_EVENTS_BURST : SLUICE_SEC_POD_EVENTS_BURST;
	__u64 ns_per_token = NS_PER_SEC / rate;
	__u64 now = bpf_ktime_get_ns();
	struct sec_budget *b = budget_of(netns, bucket, burst, now);
	__u64 last, tokens;
	__s64 had;

	*charge = b;
	if (!b)
		return 1;
	last = b->last_ns;
	if (now > last && now - last >= ns_per_token) {
		tokens = (now - last) / ns_per_token;
		/* Idle for longer than a burst takes to refill: start from now, full. */
		__u64 next = tokens >= burst ? now : last + tokens * ns_per_token;

		if (__sync_val_compare_and_swap(&b->last_ns, last, next) == last) {
			__s64 cur = b->tokens;

			if (cur < 0)
				cur = 0;
			if (cur >= (__s64)burst)
				tokens = 0;
			else if (cur + (__s64)tokens > (__s64)burst)
				tokens = burst - cur;
			if (tokens > 0)
				__sync_fetch_and_add(&b->tokens, tokens);
		}
	}
	had = __sync_fetch_and_add(&b->tokens, -1);
	if (had > 0)
		return 1;
	__sync_fetch_and_add(&b->tokens, 1);
	__sync_fetch_and_add(&b->lost_budget, 1);
	count_stat(SLUICE_SEC_STAT_LOST_BUDGET);
	return 0;
}

/* A record of `size` bytes in the ring buffer, or NULL (counted, globally and for netns) when netns's budget of that kind is spent or the ring full. */
static __always_inline void *reserve(__u64 size, __u32 bucket, __u32 netns)
{
	struct sec_budget *b;
	void *e;

	if (!event_allowed(netns, bucket, &b))
		return NULL;
	e = bpf_ringbuf_reserve(&security_events, size, 0);
	if (!e) {
		count_stat(SLUICE_SEC_STAT_LOST_RINGBUF);
		if (b)
			__sync_fetch_and_add(&b->lost_ringbuf, 1);
	}
	return e;
}

static __always_inline int is_host(__u32 netns)
{
	struct security_config *c = config();

	/* Unconfigured (0): any netns might be the host's, so no wildcard entry applies anywhere. */
	return !c || c->host_netns == 0 || c->host_netns == netns;
}

/* Fills the header from the current task; type, time and netns given. */
static __always_inline void fill_header(struct sec_header *h, __u32 type, __u32 netns, struct task_struct *task)
{
	__u64 id = bpf_get_current_pid_tgid();

	h->time_ns = bpf_ktime_get_ns();
	h->type = type;
	h->flags = 0;
	h->netns = netns;
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = BPF_CORE_READ(task, cred, uid.val);
	h->euid = BPF_CORE_READ(task, cred, euid.val);
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* The exact entry of netns, else the wildcard (0) one unless netns is the host's. */
static __always_inline void *lookup_scoped(void *map, void *key, __u32 *netns_field, __u32 netns)
{
	void *v;

	*netns_field = netns;
	v = bpf_map_lookup_elem(map, key);
	if (v || is_host(netns))
		return v;
	*netns_field = 0;
	return bpf_map_lookup_elem(map, key);
}

#define AT_FDCWD -100
/* Directories walked up from a cwd, and mount boundaries crossed, before giving up (the agent then tries /proc). */
#define CWD_DEPTH 16
#define CWD_MOUNT_HOPS 8
#define PATH_MASK (SLUICE_SEC_PATH_LEN - 1)

/* Where a cwd-relative path is put together: twice a path, so any write at an offset below one path fits. */
struct path_scratch {
	char buf[2 * SLUICE_SEC_PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} security_path_scratch SEC(".maps");

/*
 * Makes path, relative to the cwd, absolute as the process sees it: the
 * cwd's names walked up to the process's root (a container's own root), mount
 * boundaries crossed. Leaves it as it is when the cwd is deeper than
 * CWD_DEPTH, crosses more than CWD_MOUNT_HOPS mounts, or the result is longer
 * than a path. Only relative opens pay for this; most opens name absolute paths.
 */
static __always_inline void resolve_cwd(struct task_struct *task, char path[SLUICE_SEC_PATH_LEN], __u32 *path_len, __u32 *flags)
{
	const unsigned char *names[CWD_DEPTH];
	__u32 zero = 0;
	struct path_scratch *scratch = bpf_map_lookup_elem(&security_path_scratch, &zero);
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	struct dentry *root = BPF_CORE_READ(fs, root.dentry);
	struct vfsmount *root_mnt = BPF_CORE_READ(fs, root.mnt);
	struct dentry *d = BPF_CORE_READ(fs, pwd.dentry);
	struct vfsmount *vmnt = BPF_CORE_READ(fs, pwd.mnt);
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
	int n = 0, hops = 0, done = 0;
	__u32 off = 0;
	long r;

	if (!scratch)
		return;
	for (int i = 0; i < CWD_DEPTH + CWD_MOUNT_HOPS; i++) {
		struct dentry *parent;

		if (d == root && vmnt == root_mnt) {
			done = 1;
			break;
		}
		if (d == BPF_CORE_READ(vmnt, mnt_root)) {
			/* The top of this mount: go on from where it is mounted. */
			struct mount *m = (struct mount *)((void *)vmnt - mnt_off);
			struct mount *up = BPF_CORE_READ(m, mnt_parent);

			if (up == m || ++hops > CWD_MOUNT_HOPS)
				break;
			d = BPF_CORE_READ(m, mnt_mountpoint);
			vmnt = (struct vfsmount *)((void *)up + mnt_off);
			continue;
		}
		parent = BPF_CORE_READ(d, d_parent);
		if (parent == d) {
			done = 1;
			break;
		}
		if (n >= CWD_DEPTH)
			break;
		names[n++] = BPF_CORE_READ(d, d_name.name);
		d = parent;
	}
	if (!done)
		return;
	for (int i = CWD_DEPTH - 1; i >= 0; i--) {
		if (i >= n)
			continue;
		scratch->buf[off & PATH_MASK] = '/';
		off++;
		r = bpf_probe_read_kernel_str(&scratch->buf[off & PATH_MASK], SLUICE_SEC_PATH_LEN, names[i]);
		if (r <= 0)
			return;
		off += r - 1;
		if (off >= SLUICE_SEC_PATH_LEN)
			return;
	}
	scratch->buf[off & PATH_MASK] = '/';
	off++;
	r = bpf_probe_read_kernel_str(&scratch->buf[off & PATH_MASK], SLUICE_SEC_PATH_LEN, path);
	if (r <= 0 || off + r > SLUICE_SEC_PATH_LEN)
		return;
	off += r - 1;
	bpf_probe_read_kernel(path, SLUICE_SEC_PATH_LEN, scratch->buf);
	*path_len = off;
	*flags |= SLUICE_SEC_F_CWD_RESOLVED;
}

/*
 * Is this exec in security_kill? By the executed file's name, then by the
 * name it was run as: its comm, which exec has just set (kbasename of the
 * path asked for), what proc.name says. A busybox applet's file is
 * "busybox" while it runs as "nc": without the second lookup a kill rule for
 * nc would never fire in an alpine pod.
 */
static __always_inline int kill_listed(struct kill_key *key, __u32 netns, struct task_struct *task, struct linux_binprm *bprm)
{
	if (bpf_probe_read_kernel_str(key->name, sizeof(key->name), BPF_CORE_READ(bprm, file, f_path.dentry, d_name.name)) > 0 &&
	    lookup_scoped(&security_kill, key, &key->netns, netns))
		return 1;
	__builtin_memset(key, 0, sizeof(*key));
	if (BPF_CORE_READ_STR_INTO(&key->name, task, comm) <= 0)
		return 0;
	return lookup_scoped(&security_kill, key, &key->netns, netns) != NULL;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sec_exec, struct task_struct *task, int old_pid, struct linux_binprm *bprm)
{
	struct kill_key key = {};
	struct sec_exec *e;
	unsigned long arg_start, arg_end, len;
	__u32 netns = netns_of(task);
	int killed = 0;
	long n;

	if (kill_listed(&key, netns, task, bprm)) {
		bpf_send_signal(SIGKILL);
		count_stat(SLUICE_SEC_STAT_KILLED);
		killed = 1;
	}

	e = reserve(sizeof(*e), SLUICE_SEC_BUCKET_PROCESS, netns);
	if (!e)
		return 0;
	fill_header(&e->h, SLUICE_SEC_EXEC, netns, task);
	if (killed)
		e->h.flags |= SLUICE_SEC_F_KILLED;
	BPF_CORE_READ_STR_INTO(&e->pcomm, task, real_parent, comm);
	n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	e->filename_len = n > 0 ? n - 1 : 0;
	if (n > 1 && e->filename[0] != '/')
		resolve_cwd(task, e->filename, &e->filename_len, &e->h.flags);

	arg_start = BPF_CORE_READ(task, mm, arg_start);
	arg_end = BPF_CORE_READ(task, mm, arg_end);
	len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (len > SLUICE_SEC_ARGS_LEN) {
		len = SLUICE_SEC_ARGS_LEN;
		e->h.flags |= SLUICE_SEC_F_ARGS_CUT;
	}
	/* Keeps the bound in the register the verifier checks. */
	asm volatile("%[len] &= %[mask]" : [len] "+r"(len) : [mask] "i"(2 * SLUICE_SEC_ARGS_LEN - 1));
	if (len > SLUICE_SEC_ARGS_LEN)
		len = SLUICE_SEC_ARGS_LEN;
	if (len > 0 && bpf_probe_read_user(e->args, len, (const void *)arg_start) == 0)
		e->args_len = len;
	else
		e->args_len = 0;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sec_exit, struct task_struct *task, _Bool group_dead)
{
	struct sec_exit *e;
	__u32 netns;

	if (!group_dead)
		return 0;
	netns = netns_of(task);
	e = reserve(sizeof(*e), SLUICE_SEC_BUCKET_PROCESS, netns);
	if (!e)
		return 0;
	fill_header(&e->h, SLUICE_SEC_EXIT, netns, task);
	e->exit_code = BPF_CORE_READ(task, exit_code);
	e->reserved = 0;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

/* An open event, unless a host process's and the agent did not ask for those. */
static __always_inline void emit_open(int dfd, const char *path, __u64 flags, __u32 event_flags)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 netns = netns_of(task);
	struct security_config *c = config();
	struct sec_open *e;
	long n;

	/* Until the agent has said which netns is the host's (host_netns 0), no opens: they would be the host's. */
	if (!c || c->host_netns == 0 || (c->host_netns == netns && !(c->flags & SLUICE_SEC_CFG_HOST_OPENS)))
		return;
	e = reserve(sizeof(*e), SLUICE_SEC_BUCKET_FILES, netns);
	if (!e)
		return;
	fill_header(&e->h, SLUICE_SEC_OPEN, netns, task);
	e->h.flags = event_flags;
	e->dfd = dfd;
	e->flags = flags;
	n = bpf_probe_read_user_str(e->path, sizeof(e->path), path);
	e->path_len = n > 0 ? n - 1 : 0;
	if (dfd == AT_FDCWD && n > 1 && e->path[0] != '/')
		resolve_cwd(task, e->path, &e->path_len, &e->h.flags);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int sec_openat(struct sys_enter_ctx *ctx)
{
	emit_open((int)ctx->args[0], (const char *)ctx->args[1], (__u32)ctx->args[2], 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int sec_openat2(struct sys_enter_ctx *ctx)
{
	struct open_how how = {};

	bpf_probe_read_user(&how, sizeof(how), (const void *)ctx->args[2]);
	emit_open((int)ctx->args[0], (const char *)ctx->args[1], how.flags, SLUICE_SEC_F_OPENAT2);
	return 0;
}

/* Attached to sys_enter of setuid, setreuid and setresuid: remembers the uids of a thread that is not root yet. */
SEC("tracepoint/syscalls/sys_enter_setuid")
int sec_setuid_enter(struct sys_enter_ctx *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pending_setuid p = {
		.uid = BPF_CORE_READ(task, cred, uid.val),
		.euid = BPF_CORE_READ(task, cred, euid.val),
	};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (p.uid == 0 && p.euid == 0)
		return 0;
	if (bpf_map_update_elem(&security_pending_setuid, &tid, &p, BPF_ANY) != 0)
		count_stat(SLUICE_SEC_STAT_LOST_SETUID);
	return 0;
}

/* Attached to sys_exit of the same three: an event when the uid or euid went from non-zero to 0. */
SEC("tracepoint/syscalls/sys_exit_setuid")
int sec_setuid_exit(struct sys_exit_ctx *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_setuid *p = bpf_map_lookup_elem(&security_pending_setuid, &tid);
	struct pending_setuid before;
	struct sec_setuid *e;
	__u32 uid, euid, netns;

	if (!p)
		return 0;
	before = *p;
	bpf_map_delete_elem(&security_pending_setuid, &tid);
	if (ctx->ret != 0)
		return 0;
	uid = BPF_CORE_READ(task, cred, uid.val);
	euid = BPF_CORE_READ(task, cred, euid.val);
	if (!((before.uid != 0 && uid == 0) || (before.euid != 0 && euid == 0)))
		return 0;
	netns = netns_of(task);
	e = reserve(sizeof(*e), SLUICE_SEC_BUCKET_PROCESS, netns);
	if (!e)
		return 0;
	fill_header(&e->h, SLUICE_SEC_SETUID, netns, task);
	e->old_uid = before.uid;
	e->old_euid = before.euid;
	e->syscall = ctx->nr;
	e->reserved = 0;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

/* Whether the connect_rule refuses a connect to port (host order). */
static __always_inline int refused(const struct connect_rule *r, __u16 port)
{
	int listed = 0;

	for (int i = 0; i < SLUICE_SEC_MAX_PORTS; i++) {
		if (i >= r->nports)
			break;
		if (r->ports[i] == port) {
			listed = 1;
			break;
		}
	}
	if (r->mode == SLUICE_SEC_CONNECT_ALLOW_ONLY)
		return !listed;
	if (r->mode == SLUICE_SEC_CONNECT_DENY)
		return listed;
	return 0;
}

/*
 * The verdict on a connect, or on a UDP datagram sent to an address without
 * one (sendto: no connect to refuse, so sendmsg is judged the same way): 1
 * lets it through, 0 refuses it with EPERM. A connect always has its event;
 * a datagram only when refused (one per datagram would flood the ring).
 */
static __always_inline int judge_connect(struct bpf_sock_addr *ctx, __u16 family, int datagram)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 netns = netns_of(task);
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	struct security_config *c = config();
	struct connect_rule *rule;
	struct sec_connect *e;
	__u32 key;
	/* As for opens: an unconfigured sensor reports no connects (it still refuses what the map says). */
	int host = !c || c->host_netns == 0 || c->host_netns == netns;
	int deny = 0;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	rule = lookup_scoped(&security_connect, &key, &key, netns);
	if (rule && refused(rule, port)) {
		deny = 1;
		count_stat(SLUICE_SEC_STAT_DENIED);
	}
	if (datagram && !deny)
		return 1;
	if (host && !deny && !(c && c->host_netns != 0 && (c->flags & SLUICE_SEC_CFG_HOST_CONNECTS)))
		return 1;
	e = reserve(sizeof(*e), SLUICE_SEC_BUCKET_PROCESS, netns);
	if (!e)
		return !deny;
	fill_header(&e->h, SLUICE_SEC_CONNECT, netns, task);
	if (deny)
		e->h.flags |= SLUICE_SEC_F_DENIED;
	e->family = family;
	e->port = port;
	e->protocol = ctx->protocol;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	if (family == AF_INET) {
		__u32 ip4 = ctx->user_ip4;

		__builtin_memcpy(e->addr, &ip4, 4);
	} else {
		__u32 ip6[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };

		__builtin_memcpy(e->addr, ip6, 16);
	}
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return !deny;
}

SEC("cgroup/connect4")
int sec_connect4(struct bpf_sock_addr *ctx)
{
	return judge_connect(ctx, AF_INET, 0);
}

SEC("cgroup/connect6")
int sec_connect6(struct bpf_sock_addr *ctx)
{
	return judge_connect(ctx, AF_INET6, 0);
}

SEC("cgroup/sendmsg4")
int sec_sendmsg4(struct bpf_sock_addr *ctx)
{
	return judge_connect(ctx, AF_INET, 1);
}

SEC("cgroup/sendmsg6")
int sec_sendmsg6(struct bpf_sock_addr *ctx)
{
	return judge_connect(ctx, AF_INET6, 1);
}

#define SOCK_RAW 3

/*
 * deny-connect's other half: a raw socket (any protocol: with IPPROTO_RAW
 * and IP_HDRINCL it writes whole IP packets) or an SCTP socket passes by the
 * connect and sendmsg hooks, so in a namespace with a security_connect entry
 * it is refused at creation (EPERM), whatever the entry's ports. Runs for
 * every AF_INET and AF_INET6 socket of the node: one lookup when the
 * namespace has no entry (and none for the wildcard).
 */
SEC("cgroup/sock_create")
int sec_sock_create(struct bpf_sock *sk)
{
	struct task_struct *task;
	struct sec_connect *e;
	__u32 netns, key;

	if (sk->type != SOCK_RAW && sk->protocol != IPPROTO_SCTP)
		return 1;
	task = bpf_get_current_task_btf();
	netns = netns_of(task);
	if (!lookup_scoped(&security_connect, &key, &key, netns))
		return 1;
	count_stat(SLUICE_SEC_STAT_DENIED);
	e = reserve(sizeof(*e), SLUICE_SEC_BUCKET_PROCESS, netns);
	if (!e)
		return 0;
	fill_header(&e->h, SLUICE_SEC_CONNECT, netns, task);
	e->h.flags |= SLUICE_SEC_F_DENIED | SLUICE_SEC_F_SOCKET;
	e->family = sk->family;
	e->port = 0;
	e->protocol = sk->protocol;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

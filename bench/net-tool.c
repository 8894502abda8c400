// SPDX-License-Identifier: Apache-2.0
/*
 * The compiled half of the network benchmarks, built with the machine's gcc
 * at bench time (bench/net-tool.ts) so that neither end of a measurement is a
 * script: the datapath, not the client, must be the limit.
 *
 *   net-tool serve BASE_PORT NPORTS
 *       epoll echo server on BASE_PORT..BASE_PORT+NPORTS-1 (all addresses);
 *       prints "ready" once listening; runs until killed.
 *   net-tool crr IP BASE_PORT NPORTS FIRST_INDEX SECONDS INFLIGHT [http]
 *       connection rate: each connection is new (connect, 64-byte request,
 *       64-byte echo, reset-close so neither side keeps TIME_WAIT), INFLIGHT
 *       at a time. Connection i uses source port 1024 + (i / NPORTS) % 64512
 *       and destination port BASE_PORT + i % NPORTS, so no 5-tuple repeats
 *       within 64512 * NPORTS connections: every connection is a new flow to
 *       any connection tracker. With `http`, the request (and so its echo)
 *       begins with an HTTP/1.1 request line. Prints one JSON line.
 *   net-tool rr IP PORT COUNT
 *       request/response latency: one connection, COUNT round trips of one
 *       byte (after 1000 untimed); prints one JSON line with percentiles (us).
 *   net-tool watch IP BASE_PORT NPORTS FIRST_INDEX TIMEOUT_US PACE_US
 *       enforcement prober: opens new connections back to back (the same
 *       never-repeating 5-tuples as crr), each given TIMEOUT_US to complete,
 *       and prints a JSON line whenever the outcome changes: the
 *       CLOCK_MONOTONIC time (ns) at which the first attempt with the new
 *       outcome started. Attempts start at most every PACE_US (resolution
 *       against load: an unpaced prober would take a CPU from the agent it
 *       measures). A connection that completes is "allowed" at once;
 *       "denied" needs DENY_CONFIRM timeouts in a row (a busy CPU can delay
 *       one handshake past the timeout), timed from the first of them.
 *       Runs until killed.
 *   net-tool nsexec NETNS_FILE PROGRAM [ARGS...]
 *       enters the network namespace and execs PROGRAM (environment and stdio
 *       unchanged): runs two CNI plugins through the same path.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define MSG_BYTES 64
#define FIRST_SOURCE_PORT 1024
#define SOURCE_PORTS 64512
#define RR_WARMUP 1000
#define MAX_PORTS 1024
#define MAX_INFLIGHT 256

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void nonblocking(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int serve(int base, int nports)
{
	int ep = epoll_create1(0);
	int one = 1;
	int listeners[MAX_PORTS];
	struct epoll_event ev, events[MAX_EVENTS];
	char buf[4096];

	if (nports < 1 || nports > MAX_PORTS)
		die("nports");
	for (int i = 0; i < nports; i++) {
		struct sockaddr_in6 addr = { .sin6_family = AF_INET6, .sin6_port = htons(base + i), .sin6_addr = in6addr_any };
		int fd = socket(AF_INET6, SOCK_STREAM, 0);

		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
			die("bind");
		if (listen(fd, 4096) < 0)
			die("listen");
		nonblocking(fd);
		listeners[i] = fd;
		ev.events = EPOLLIN;
		ev.data.u64 = (1ull << 32) | (unsigned)fd;
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int n = epoll_wait(ep, events, MAX_EVENTS, -1);

		for (int i = 0; i < n; i++) {
			int fd = (int)(events[i].data.u64 & 0xffffffff);

			if (events[i].data.u64 >> 32) {
				for (;;) {
					int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK);

					if (c < 0)
						break;
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.events = EPOLLIN;
					ev.data.u64 = (unsigned)c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			ssize_t got = read(fd, buf, sizeof(buf));

			if (got > 0) {
				if (write(fd, buf, got) != got) {
					close(fd);
				}
			} else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(fd);
			}
		}
	}
	(void)listeners;
	return 0;
}

struct slot {
	int fd;
	int sent;
	int got;
};

static int crr(const char *ip, int base, int nports, long first, double seconds, int inflight, int http)
{
	int ep = epoll_create1(0);
	int one = 1;
	struct linger reset = { .l_onoff = 1, .l_linger = 0 };
	struct slot slots[MAX_INFLIGHT];
	struct epoll_event ev, events[MAX_EVENTS];
	char req[MSG_BYTES], buf[MSG_BYTES];
	long next = first, done = 0, failed = 0;
	double start, end;
	struct in_addr dst;

	if (inet_pton(AF_INET, ip, &dst) != 1)
		die("address");
	if (inflight < 1 || inflight > MAX_INFLIGHT)
		die("inflight");
	memset(req, 'x', sizeof(req));
	/* An HTTP/1.1 request line and headers, padded: what the datapath's L7 check hands up (bpf/l7.h). */
	if (http)
		memcpy(req, "GET /bench HTTP/1.1\r\nHost: bench\r\nX-Pad: ", 42);

	/* Opens connection `next` in slot s. */
#define OPEN(s)                                                                                                   \
	do {                                                                                                      \
		for (;;) {                                                                                        \
			long idx = next++;                                                                        \
			struct sockaddr_in src = { .sin_family = AF_INET,                                        \
						   .sin_port = htons(FIRST_SOURCE_PORT + (idx / nports) % SOURCE_PORTS) }; \
			struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(base + idx % nports), .sin_addr = dst }; \
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);                                \
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));                             \
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));                             \
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));                            \
			if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||                                \
			    (connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0 && errno != EINPROGRESS)) {      \
				close(fd);                                                                        \
				failed++;                                                                         \
				continue;                                                                         \
			}                                                                                         \
			slots[s] = (struct slot){ .fd = fd };                                                     \
			ev.events = EPOLLOUT | EPOLLIN;                                                           \
			ev.data.u32 = s;                                                                          \
			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);                                                    \
			break;                                                                                    \
		}                                                                                                 \
	} while (0)

	start = now_s();
	end = start + seconds;
	for (int s = 0; s < inflight; s++)
		OPEN(s);
	while (now_s() < end) {
		int n = epoll_wait(ep, events, MAX_EVENTS, 100);

		for (int i = 0; i < n; i++) {
			int s = events[i].data.u32;
			struct slot *sl = &slots[s];

			if (events[i].events & (EPOLLERR | EPOLLHUP)) {
				close(sl->fd);
				failed++;
				OPEN(s);
				continue;
			}
			if (!sl->sent && (events[i].events & EPOLLOUT)) {
				if (write(sl->fd, req, sizeof(req)) == sizeof(req)) {
					sl->sent = 1;
					ev.events = EPOLLIN;
					ev.data.u32 = s;
					epoll_ctl(ep, EPOLL_CTL_MOD, sl->fd, &ev);
				}
				continue;
			}
			if (events[i].events & EPOLLIN) {
				ssize_t got = read(sl->fd, buf, sizeof(buf));

				if (got > 0)
					sl->got += got;
				if (got == 0 || (got < 0 && errno != EAGAIN)) {
					close(sl->fd);
					failed++;
					OPEN(s);
				} else if (sl->got >= MSG_BYTES) {
					close(sl->fd); /* SO_LINGER 0: RST, no TIME_WAIT */
					done++;
					OPEN(s);
				}
			}
		}
	}
	double elapsed = now_s() - start;

	printf("{\"connections\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"perSecond\":%.1f,\"nextIndex\":%ld}\n", done, failed,
	       elapsed, done / elapsed, next);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int rr(const char *ip, int port, long count)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
	double *lat = malloc(sizeof(double) * count);
	char c = 'x';
	double sum = 0, t0, start = now_s();

	if (!lat || inet_pton(AF_INET, ip, &to.sin_addr) != 1)
		die("rr setup");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0)
		die("connect");
	for (long i = -RR_WARMUP; i < count; i++) {
		t0 = now_s();
		if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
			die("round trip");
		if (i >= 0)
			lat[i] = (now_s() - t0) * 1e6;
		if (i == 0)
			start = t0;
	}
	double elapsed = now_s() - start;

	close(fd);
	for (long i = 0; i < count; i++)
		sum += lat[i];
	qsort(lat, count, sizeof(double), cmp_double);
	printf("{\"roundTrips\":%ld,\"perSecond\":%.1f,\"meanUs\":%.2f,\"p50Us\":%.2f,\"p90Us\":%.2f,\"p99Us\":%.2f}\n", count,
	       count / elapsed, sum / count, lat[count / 2], lat[(long)(count * 0.9)], lat[(long)(count * 0.99)]);
	return 0;
}

#define DENY_CONFIRM 3

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* One attempt: 1 when the handshake completes within timeout_us. */
static int attempt(struct in_addr dst, int base, int nports, long idx, int timeout_us)
{
	int one = 1;
	struct linger reset = { .l_onoff = 1, .l_linger = 0 };
	struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(FIRST_SOURCE_PORT + (idx / nports) % SOURCE_PORTS) };
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(base + idx % nports), .sin_addr = dst };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int ok = 0;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0 &&
	    (connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0 || errno == EINPROGRESS)) {
		struct epoll_event ev = { .events = EPOLLOUT }, out;
		int ep = epoll_create1(0);
		int err = 0;
		socklen_t len = sizeof(err);

		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		/* epoll_wait has ms resolution: poll in 100 us steps up to the timeout. */
		for (int waited = 0; waited <= timeout_us && !ok; waited += 100) {
			if (epoll_wait(ep, &out, 1, 0) == 1) {
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
				ok = err == 0;
				break;
			}
			usleep(100);
		}
		close(ep);
	}
	close(fd);
	return ok;
}

static int watch(const char *ip, int base, int nports, long first, int timeout_us, int pace_us)
{
	struct in_addr dst;
	int state = -1, fails = 0;
	long long first_fail = 0;

	if (inet_pton(AF_INET, ip, &dst) != 1)
		die("address");
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (long idx = first;; idx++) {
		long long t = now_ns();
		int ok = attempt(dst, base, nports, idx, timeout_us);
		long long spent_us = (now_ns() - t) / 1000;

		if (spent_us < pace_us)
			usleep(pace_us - spent_us);

		if (ok) {
			fails = 0;
			if (state != 1)
				printf("{\"ns\":%lld,\"allowed\":true,\"index\":%ld}\n", t, idx);
			state = 1;
			continue;
		}
		if (fails++ == 0)
			first_fail = t;
		if (fails >= DENY_CONFIRM && state != 0) {
			printf("{\"ns\":%lld,\"allowed\":false,\"index\":%ld}\n", first_fail, idx);
			state = 0;
		}
	}
	return 0;
}

static int nsexec(const char *netns, char **argv)
{
	int fd = open(netns, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
		die(netns);
	execv(argv[0], argv);
	die(argv[0]);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]), atoi(argv[3]));
	if (argc >= 8 && !strcmp(argv[1], "crr"))
		return crr(argv[2], atoi(argv[3]), atoi(argv[4]), atol(argv[5]), atof(argv[6]), atoi(argv[7]), argc >= 9 && !strcmp(argv[8], "http"));
	if (argc >= 5 && !strcmp(argv[1], "rr"))
		return rr(argv[2], atoi(argv[3]), atol(argv[4]));
	if (argc >= 8 && !strcmp(argv[1], "watch"))
		return watch(argv[2], atoi(argv[3]), atoi(argv[4]), atol(argv[5]), atoi(argv[6]), atoi(argv[7]));
	if (argc >= 4 && !strcmp(argv[1], "nsexec"))
		return nsexec(argv[2], argv + 3);
	fprintf(stderr, "usage: net-tool serve|crr|rr|nsexec ... (see bench/net-tool.c)\n");
	return 2;
}

// SPDX-License-Identifier: Apache-2.0
// Off-CPU workload whose blocking is known by construction. The main thread loops:
//   wait_pipe(): asks a helper thread for a byte and reads it; the helper answers 30 ms later
//                                                                  (3/4 of the main thread's blocked time)
//   nap():       nanosleep 10 ms                                   (1/4)
// The main thread's syscalls are issued inline (no libc wrapper, which has no frame pointer), so
// its user stack at each block reads main -> work -> wait_pipe | nap exactly.
// Usage: blocker SECONDS [NAP_MS] (default 10)
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int request[2], answer[2];
static long nap_ms = 10;

static long raw_syscall3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

__attribute__((noinline)) void wait_pipe(void)
{
	char c = 'q';
	raw_syscall3(SYS_write, request[1], (long)&c, 1);
	raw_syscall3(SYS_read, answer[0], (long)&c, 1);
}

__attribute__((noinline)) void nap(void)
{
	struct timespec ts = {nap_ms / 1000, (nap_ms % 1000) * 1000 * 1000};
	raw_syscall3(SYS_nanosleep, (long)&ts, 0, 0);
}

static void *helper(void *arg)
{
	char c;
	(void)arg;
	while (read(request[0], &c, 1) == 1) {
		struct timespec ts = {0, 30 * 1000 * 1000};
		nanosleep(&ts, NULL);
		if (write(answer[1], &c, 1) != 1)
			break;
	}
	return NULL;
}

__attribute__((noinline)) void work(time_t until)
{
	while (time(NULL) < until) {
		wait_pipe();
		nap();
	}
}

int main(int argc, char **argv)
{
	pthread_t t;
	int seconds = argc > 1 ? atoi(argv[1]) : 10;

	if (argc > 2)
		nap_ms = atol(argv[2]);

	if (pipe(request) || pipe(answer) || pthread_create(&t, NULL, helper, NULL))
		return 1;
	work(time(NULL) + seconds);
	return 0;
}

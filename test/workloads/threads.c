// SPDX-License-Identifier: Apache-2.0
// Threads that start and end while it runs: every 100 ms a new thread named "worker-N" spins for
// 50 ms in thread_work() and exits; the main thread idles in between. Usage: threads SECONDS
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void thread_work(double seconds)
{
	double end = now() + seconds;
	while (now() < end)
		for (unsigned long i = 0; i < 10000; i++)
			sink += i;
}

static void *worker(void *arg)
{
	char name[16];
	snprintf(name, sizeof(name), "worker-%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	thread_work(0.05);
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	double end = now() + seconds;
	for (long n = 0; now() < end; n++) {
		pthread_t t;
		if (pthread_create(&t, NULL, worker, (void *)n) != 0)
			return 1;
		pthread_join(t, NULL);
		usleep(50000);
	}
	return 0;
}

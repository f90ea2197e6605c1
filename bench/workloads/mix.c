// SPDX-License-Identifier: Apache-2.0
// Benchmark workload: THREADS threads each run a fixed amount of work spread over ten functions
// whose costs are 1..10 units (fn01 .. fn10), so the expected self shares are 1/55 .. 10/55
// (1.8% .. 18.2%). Prints the wall time of the work in seconds, the slowdown measure.
// Usage: mix ROUNDS THREADS
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;
static long rounds;

#define FN(name, units)                                                   \
	__attribute__((noinline)) void name(void)                         \
	{                                                                 \
		for (unsigned long i = 0; i < (units) * 20000UL; i++)     \
			sink += i;                                        \
	}
FN(fn01, 1) FN(fn02, 2) FN(fn03, 3) FN(fn04, 4) FN(fn05, 5)
FN(fn06, 6) FN(fn07, 7) FN(fn08, 8) FN(fn09, 9) FN(fn10, 10)

__attribute__((noinline)) void one_round(void)
{
	fn01(); fn02(); fn03(); fn04(); fn05();
	fn06(); fn07(); fn08(); fn09(); fn10();
}

static void *worker(void *arg)
{
	(void)arg;
	for (long r = 0; r < rounds; r++)
		one_round();
	return NULL;
}

int main(int argc, char **argv)
{
	rounds = argc > 1 ? atol(argv[1]) : 1000;
	int threads = argc > 2 ? atoi(argv[2]) : 2;
	pthread_t t[64];
	struct timespec a, b;
	if (threads < 1 || threads > 64)
		return 2;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.6f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}

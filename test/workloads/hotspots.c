// SPDX-License-Identifier: Apache-2.0
// Hot spots known by construction: work() calls hot_a() with three times the loop count of hot_b(),
// both running the same loop body, so hot_a should get 75% of the samples and hot_b 25%.
// Usage: hotspots SECONDS   (spins for that long, then exits 0)
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

/* Each function runs its own copy of the loop, so its own instructions are the hot ones. */
__attribute__((noinline)) void hot_a(unsigned long n)
{
	for (unsigned long i = 0; i < 3 * n; i++)
		sink += i * 2654435761u;
}

__attribute__((noinline)) void hot_b(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		sink += i * 2654435761u;
}

__attribute__((noinline)) void work(unsigned long n)
{
	hot_a(n);
	hot_b(n);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	double end = now() + seconds;
	while (now() < end)
		work(100000);
	return 0;
}

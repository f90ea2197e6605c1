// SPDX-License-Identifier: Apache-2.0
// Mixed stacks: this executable keeps frame pointers and, built with -fno-asynchronous-unwind-tables,
// has no unwind info for its own functions; it calls middle() in a library built without frame
// pointers (mixed-lib.c, with unwind tables), which calls back in here:
//   main -> outer -> middle (library) -> callback -> spin
// The unwinder must switch from frame pointers to tables and back.
// Usage: mixed SECONDS
#include <stdlib.h>
#include <time.h>

void middle(void (*callback)(unsigned long), unsigned long n);

static volatile unsigned long sink;

__attribute__((noinline)) void spin(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		sink += i * 2654435761u;
}

__attribute__((noinline)) void callback(unsigned long n)
{
	spin(n);
	sink++;
}

__attribute__((noinline)) void outer(unsigned long n)
{
	middle(callback, n);
	sink++;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double end = now() + (argc > 1 ? atof(argv[1]) : 5);
	while (now() < end)
		outer(100000);
	return 0;
}

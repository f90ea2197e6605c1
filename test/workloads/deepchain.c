// SPDX-License-Identifier: Apache-2.0
// A call chain known by construction, for unwinding without frame pointers: built with
// -O2 -fomit-frame-pointer (and linked against Debian's libc, which has none either), so only
// unwind tables can recover it. main -> level1 -> level2 -> level3 -> leaf_a | leaf_b, where leaf_a
// runs three times the loop count of leaf_b: leaf_a ~75% of the samples, leaf_b ~25%.
// Every level keeps work after its call (no tail calls) and uses stack (so its CFA moves).
// Usage: deepchain SECONDS           spin for that long
//        deepchain - ITERATIONS      print "ready", wait for a line on stdin, run ITERATIONS calls of
//                                    level1, print the seconds they took (benchmarks: fixed work)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile unsigned long sink;

#define KEEP __attribute__((noinline, noipa))

KEEP void leaf_a(unsigned long n)
{
	for (unsigned long i = 0; i < 3 * n; i++)
		sink += i * 2654435761u;
}

KEEP void leaf_b(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		sink += i * 2654435761u;
}

KEEP void level3(unsigned long n)
{
	volatile char pad[96];
	memset((char *)pad, (int)n, sizeof(pad));
	leaf_a(n);
	leaf_b(n);
	sink += pad[7];
}

KEEP void level2(unsigned long n)
{
	volatile char pad[200];
	memset((char *)pad, (int)n, sizeof(pad));
	level3(n);
	sink += pad[3];
}

KEEP void level1(unsigned long n)
{
	level2(n);
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
	if (argc > 2 && strcmp(argv[1], "-") == 0) {
		long iterations = atol(argv[2]);
		char line[16];
		printf("ready\n");
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
		double start = now();
		for (long i = 0; i < iterations; i++)
			level1(100000);
		printf("%.6f\n", now() - start);
		return 0;
	}
	double end = now() + (argc > 1 ? atof(argv[1]) : 5);
	while (now() < end)
		level1(100000);
	return 0;
}

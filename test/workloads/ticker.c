// SPDX-License-Identifier: Apache-2.0
// Wakes up every millisecond (a 1 ms sleep, then a little work), for run-queue latency tests: each
// wakeup is one latency sample. With `spin`, it is a busy loop instead (the contention).
// Usage: ticker SECONDS | ticker SECONDS spin
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 10;
	int spin = argc > 2 && strcmp(argv[2], "spin") == 0;
	time_t until = time(NULL) + seconds;
	volatile unsigned long x = 0;

	while (time(NULL) < until) {
		if (spin) {
			for (int i = 0; i < 1000000; i++)
				x += i;
			continue;
		}
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
		for (int i = 0; i < 10000; i++)
			x += i;
	}
	return 0;
}

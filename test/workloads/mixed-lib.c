// SPDX-License-Identifier: Apache-2.0
// The no-frame-pointer middle of the mixed workload (mixed.c): built -O2 -fomit-frame-pointer as a
// shared library. middle() calls back into the executable, which keeps frame pointers; a
// frame-pointer walk from the callback skips the executable frame that called middle().
#include <string.h>

static volatile unsigned long lib_sink;

__attribute__((noinline, noipa)) void middle(void (*callback)(unsigned long), unsigned long n)
{
	volatile char pad[64];
	memset((char *)pad, (int)n, sizeof(pad));
	callback(n);
	lib_sink += pad[5];
}

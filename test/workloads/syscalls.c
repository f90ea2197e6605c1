// SPDX-License-Identifier: Apache-2.0
// Spends most of its time in the kernel: reads /dev/zero in 64 KiB chunks (copy_to_user in the
// kernel) from do_reads(). The read is a raw `syscall` instruction inside do_reads rather than a
// call to libc's read(): libc has no frame pointers, and a frame-pointer unwind from inside it
// would skip its caller. Usage: syscalls SECONDS
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 16];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long raw_read(int fd, void *p, unsigned long n)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "0"(SYS_read), "D"(fd), "S"(p), "d"(n) : "rcx", "r11", "memory");
	return ret;
}

__attribute__((noinline)) void do_reads(int fd)
{
	for (int i = 0; i < 1000; i++)
		if (raw_read(fd, buf, sizeof(buf)) < 0)
			exit(2);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	int fd = open("/dev/zero", O_RDONLY);
	if (fd < 0)
		return 1;
	double end = now() + seconds;
	while (now() < end)
		do_reads(fd);
	return 0;
}

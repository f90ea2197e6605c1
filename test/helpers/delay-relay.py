#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Test-only network path with a known delay and loss, for the TCP tests (test/helpers/netns.ts).

This kernel has no sch_netem, so `tc netem` cannot delay or drop packets. Instead, one TUN device is
created in each of two network namespaces and this process relays IP packets between them: every
packet waits --delay-ms before it is written to the other side (so the round trip is twice that),
and with --drop-every N every Nth data-carrying TCP segment from A to B is dropped (deterministic,
so a retransmit is certain). Node.js cannot create TUN devices (it has no ioctl), hence Python.

Prints "ready" once both devices exist, then relays until stdin closes or SIGTERM.
"""
import argparse
import ctypes
import fcntl
import heapq
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000


def open_tun_in(netns, name, libc):
    """Creates TUN device `name` inside network namespace `netns` (a name under /var/run/netns)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    finally:
        if libc.setns(own, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(own)
        os.close(target)
    return fd


def tcp_payload_len(pkt):
    """Payload bytes of an IPv4 TCP segment, 0 for anything else."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4 or pkt[9] != 6:
        return 0
    ihl = (pkt[0] & 0x0F) * 4
    total = struct.unpack("!H", pkt[2:4])[0]
    if len(pkt) < ihl + 20:
        return 0
    doff = (pkt[ihl + 12] >> 4) * 4
    return max(0, total - ihl - doff)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns-a", required=True)
    ap.add_argument("--ns-b", required=True)
    ap.add_argument("--tun", default="ebpt0", help="device name in both namespaces")
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--drop-every", type=int, default=0)
    args = ap.parse_args()

    libc = ctypes.CDLL(None, use_errno=True)
    fa = open_tun_in(args.ns_a, args.tun, libc)
    fb = open_tun_in(args.ns_b, args.tun, libc)
    other = {fa: fb, fb: fa}
    delay = args.delay_ms / 1000.0
    queue = []  # (due, seq, fd, packet)
    seq = 0
    data_a_to_b = 0
    stats = {"relayed": 0, "dropped": 0}
    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    inputs = [fa, fb, sys.stdin.fileno()]
    while running[0]:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 0.5
        readable, _, _ = select.select(inputs, [], [], timeout)
        for fd in readable:
            if fd == sys.stdin.fileno():
                if not os.read(fd, 4096):
                    running[0] = False
                continue
            while True:
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if fd == fa and args.drop_every > 0 and tcp_payload_len(pkt) > 0:
                    data_a_to_b += 1
                    if data_a_to_b % args.drop_every == 0:
                        stats["dropped"] += 1
                        print(f"dropped {stats['dropped']}", file=sys.stderr, flush=True)
                        continue
                seq += 1
                heapq.heappush(queue, (time.monotonic() + delay, seq, other[fd], pkt))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, pkt = heapq.heappop(queue)
            try:
                os.write(out, pkt)
                stats["relayed"] += 1
            except OSError:
                stats["dropped"] += 1
    print(f"relayed {stats['relayed']} dropped {stats['dropped']}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

// SPDX-License-Identifier: Apache-2.0
// libbpf prints warnings and the verifier log through one global callback; we keep the most
// recent lines so that a failed load can quote them in its error message.
#pragma once
#include <cstdint>
#include <string>

namespace ebpfprof {

void InstallLibbpfLog();
// A position in the log; LinesSince(mark) returns what libbpf printed after it.
uint64_t LogMark();
std::string LinesSince(uint64_t mark, size_t max_lines);
void SetLibbpfDebug(bool on);

}  // namespace ebpfprof

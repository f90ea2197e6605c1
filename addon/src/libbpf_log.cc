// SPDX-License-Identifier: Apache-2.0
#include "libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <deque>
#include <mutex>

namespace ebpfprof {

namespace {
constexpr size_t kKeptLines = 400;
std::mutex g_mutex;
std::deque<std::string> g_lines;
uint64_t g_total = 0;  // lines ever printed; g_lines holds the last kKeptLines of them
bool g_debug = false;

int Print(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG && !g_debug) return 0;
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), format, args);
  if (n < 0) return 0;
  std::string text(buf);
  std::lock_guard<std::mutex> lock(g_mutex);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) {
      g_lines.emplace_back(text.substr(start, end - start));
      g_total++;
      if (g_lines.size() > kKeptLines) g_lines.pop_front();
    }
    start = end + 1;
  }
  return n;
}
}  // namespace

void InstallLibbpfLog() { libbpf_set_print(Print); }

void SetLibbpfDebug(bool on) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_debug = on;
}

uint64_t LogMark() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_total;
}

std::string LinesSince(uint64_t mark, size_t max_lines) {
  std::lock_guard<std::mutex> lock(g_mutex);
  uint64_t first_kept = g_total - g_lines.size();
  uint64_t from = mark < first_kept ? first_kept : mark;
  uint64_t count = g_total - from;
  if (count > max_lines) from = g_total - max_lines;
  std::string out;
  for (uint64_t i = from; i < g_total; i++) {
    if (!out.empty()) out += "\n";
    out += g_lines[i - first_kept];
  }
  return out;
}

}  // namespace ebpfprof

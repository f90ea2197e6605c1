// SPDX-License-Identifier: Apache-2.0
// Process-wide capability drop and BPF_TASK_FD_QUERY: generic system calls Node has no API for.
//
// Linux credentials belong to threads, not processes: capset(2) and PR_CAPBSET_DROP change only the
// calling thread, and Node runs several threads (V8 platform workers, the libuv pool, and a
// SIGUSR1 "inspector" thread that blocks every signal it can). glibc solves the same problem for
// setuid(2) by having every thread run the system call from a handler of its internal signal
// SIGSETXID (33), which no thread can block. dropCapabilities() does the same: it installs its own
// handler for signal 33 with the raw rt_sigaction system call (glibc's wrapper refuses that signal),
// queues the signal to every thread with a marker that tells it apart from glibc's own use, waits for
// each thread to acknowledge, repeats for threads created meanwhile, and puts glibc's handler back.
// A signal without the marker is passed on to glibc's handler.
#include <dirent.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <bpf/bpf.h>

#include "capabilities.h"
#include "errors.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524  // kernel-internal "operation not supported", seen by user space as is
#endif

namespace ebpfprof {

namespace {

constexpr int kBroadcastSignal = 33;  // glibc's SIGSETXID: never blocked by any thread
constexpr int kMarker = 0x65627066;   // "ebpf": our queued signals carry it in si_value

// The kernel's struct sigaction (x86_64 and arm64 layout: handler, flags, restorer, mask).
struct KernelSigaction {
  void (*handler)(int, siginfo_t*, void*);
  unsigned long flags;
  void (*restorer)(void);
  uint64_t mask;
};

struct Request {
  uint64_t keep;           // permitted = effective = this (intersected with what the thread has)
  uint64_t drop_bounding;  // bits removed from the bounding set
  bool no_new_privs;
};

Request g_request;
KernelSigaction g_previous;
std::atomic<int> g_acks{0};
std::atomic<int> g_first_errno{0};
std::atomic<int> g_first_step{0};  // 1 bounding, 2 ambient, 3 no_new_privs, 4 capget, 5 capset

void Record(int step, int err) {
  int expected = 0;
  if (g_first_errno.compare_exchange_strong(expected, err)) g_first_step.store(step);
}

// Async-signal-safe: raw system calls and atomics only.
void ApplyToThisThread(const Request& r) {
  for (int cap = 0; cap < 64; cap++) {
    if (!((r.drop_bounding >> cap) & 1)) continue;
    if (syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) Record(1, errno);
  }
  if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) Record(2, errno);
  if (r.no_new_privs && syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Record(3, errno);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &header, data) != 0) {
    Record(4, errno);
    return;
  }
  uint64_t permitted = (static_cast<uint64_t>(data[1].permitted) << 32) | data[0].permitted;
  uint64_t kept = permitted & r.keep;
  for (int i = 0; i < 2; i++) {
    data[i].permitted = static_cast<uint32_t>(kept >> (32 * i));
    data[i].effective = data[i].permitted;
    data[i].inheritable = 0;
  }
  header = {_LINUX_CAPABILITY_VERSION_3, 0};
  if (syscall(SYS_capset, &header, data) != 0) Record(5, errno);
}

void Handler(int sig, siginfo_t* info, void* context) {
  if (info != nullptr && info->si_code == SI_QUEUE && info->si_value.sival_int == kMarker && info->si_pid == getpid()) {
    int saved = errno;
    ApplyToThisThread(g_request);
    g_acks.fetch_add(1);
    errno = saved;
    return;
  }
  // Not ours: glibc's own use of the signal.
  if (g_previous.handler != nullptr && reinterpret_cast<uintptr_t>(g_previous.handler) > 1) g_previous.handler(sig, info, context);
}

std::vector<pid_t> Threads() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long tid = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0' && tid > 0) out.push_back(static_cast<pid_t>(tid));
  }
  closedir(d);
  return out;
}

const char* StepName(int step) {
  switch (step) {
    case 1: return "prctl(PR_CAPBSET_DROP)";
    case 2: return "prctl(PR_CAP_AMBIENT)";
    case 3: return "prctl(PR_SET_NO_NEW_PRIVS)";
    case 4: return "capget";
    default: return "capset";
  }
}

uint64_t ArgMask(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsArray()) ThrowType(info.Env(), std::string(name) + " must be an array of capability bit numbers");
  Napi::Array a = info[i].As<Napi::Array>();
  uint64_t mask = 0;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    if (!v.IsNumber()) ThrowType(info.Env(), std::string(name) + "[" + std::to_string(k) + "] must be a number");
    double bit = v.As<Napi::Number>().DoubleValue();
    if (bit < 0 || bit > 63 || bit != static_cast<double>(static_cast<int>(bit))) ThrowType(info.Env(), std::string(name) + "[" + std::to_string(k) + "] must be an integer in 0..63");
    mask |= 1ULL << static_cast<int>(bit);
  }
  return mask;
}

void SleepMs(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, nullptr);
}

}  // namespace

// dropCapabilities(keep: number[], { noNewPrivs?: boolean, timeoutMs?: number })
//   -> { threads, rounds, errors: [{ tid, code, errno, syscall }] }
// Every thread of the process ends with permitted = effective = (its permitted ∩ keep), inheritable
// and ambient empty, every capability outside `keep` removed from its bounding set (which needs
// CAP_SETPCAP; without it the bounding set stays as it is and the error is reported), and, with
// noNewPrivs, PR_SET_NO_NEW_PRIVS. Errors are returned, not thrown: the caller reads the result
// back from /proc/self/task and decides.
Napi::Value DropCapabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Request request{};
  request.keep = ArgMask(info, 0, "keep");
  request.drop_bounding = ~request.keep;
  long timeout_ms = 2000;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    Napi::Object o = ArgObject(info, 1, "options");
    request.no_new_privs = o.Get("noNewPrivs").ToBoolean().Value();
    timeout_ms = static_cast<long>(OptNumber(o, "timeoutMs", 2000));
  }
  g_request = request;
  g_first_errno.store(0);
  g_first_step.store(0);

  struct Failure {
    pid_t tid;
    int err;
    int step;
  };
  std::vector<Failure> failures;
  auto take_error = [&](pid_t tid) {
    int err = g_first_errno.exchange(0);
    if (err != 0) failures.push_back({tid, err, g_first_step.load()});
  };

  pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  ApplyToThisThread(request);
  take_error(self);

  KernelSigaction ours{};
  if (syscall(SYS_rt_sigaction, kBroadcastSignal, nullptr, &g_previous, sizeof(uint64_t)) != 0) {
    ThrowErrno(env, "reading the handler of signal 33", errno, "rt_sigaction");
  }
  ours.handler = Handler;
  // Keep glibc's restorer (SA_RESTORER) and add what we need: siginfo, restart interrupted calls.
  ours.flags = (g_previous.flags & 0x04000000UL) | SA_SIGINFO | SA_RESTART;
  ours.restorer = g_previous.restorer;
  ours.mask = 0;
  if (syscall(SYS_rt_sigaction, kBroadcastSignal, &ours, nullptr, sizeof(uint64_t)) != 0) {
    ThrowErrno(env, "installing the handler of signal 33", errno, "rt_sigaction");
  }

  std::set<pid_t> done{self};
  int rounds = 0;
  pid_t pid = getpid();
  for (; rounds < 10; rounds++) {
    std::vector<pid_t> fresh;
    for (pid_t tid : Threads())
      if (!done.count(tid)) fresh.push_back(tid);
    if (fresh.empty()) break;
    for (pid_t tid : fresh) {
      done.insert(tid);
      g_acks.store(0);
      siginfo_t si{};
      si.si_signo = kBroadcastSignal;
      si.si_code = SI_QUEUE;
      si.si_pid = pid;
      si.si_uid = getuid();
      si.si_value.sival_int = kMarker;
      if (syscall(SYS_rt_tgsigqueueinfo, pid, tid, kBroadcastSignal, &si) != 0) {
        if (errno != ESRCH) failures.push_back({tid, errno, 0});
        continue;  // ESRCH: the thread ended meanwhile
      }
      long waited = 0;
      while (g_acks.load() == 0 && waited < timeout_ms) {
        SleepMs(1);
        waited++;
      }
      if (g_acks.load() == 0) failures.push_back({tid, ETIMEDOUT, -1});
      take_error(tid);
    }
  }
  syscall(SYS_rt_sigaction, kBroadcastSignal, &g_previous, nullptr, sizeof(uint64_t));

  Napi::Object result = Napi::Object::New(env);
  result.Set("threads", Napi::Number::New(env, static_cast<double>(done.size())));
  result.Set("rounds", Napi::Number::New(env, rounds + 1));
  Napi::Array errors = Napi::Array::New(env, failures.size());
  for (size_t k = 0; k < failures.size(); k++) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("tid", Napi::Number::New(env, failures[k].tid));
    e.Set("errno", Napi::Number::New(env, failures[k].err));
    e.Set("message", Napi::String::New(env, failures[k].step == -1 ? "the thread did not answer in time" : std::strerror(failures[k].err)));
    e.Set("syscall", Napi::String::New(env, failures[k].step == 0 ? "rt_tgsigqueueinfo" : failures[k].step == -1 ? "signal" : StepName(failures[k].step)));
    errors.Set(static_cast<uint32_t>(k), e);
  }
  result.Set("errors", errors);
  return result;
}

// taskFdQuery(pid, fd) -> { progId, fdType, name, probeOffset, probeAddr } | null
// What BPF program a perf event or raw tracepoint fd of process `pid` carries (BPF_TASK_FD_QUERY,
// as `bpftool perf` uses). null when the fd has none or is not such an fd. Needs CAP_SYS_ADMIN.
Napi::Value TaskFdQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int pid = static_cast<int>(ArgUint32(info, 0, "pid"));
  int fd = static_cast<int>(ArgUint32(info, 1, "fd"));
  char buf[4096];
  __u32 len = sizeof(buf), prog_id = 0, fd_type = 0;
  __u64 offset = 0, addr = 0;
  if (bpf_task_fd_query(pid, fd, 0, buf, &len, &prog_id, &fd_type, &offset, &addr) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTSUPP || err == EOPNOTSUPP || err == EBADF || err == EINVAL) return env.Null();
    ThrowErrno(env, "querying fd " + std::to_string(fd) + " of process " + std::to_string(pid), err, "bpf_task_fd_query");
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("progId", Napi::Number::New(env, prog_id));
  o.Set("fdType", Napi::Number::New(env, fd_type));
  o.Set("name", Napi::String::New(env, std::string(buf, strnlen(buf, sizeof(buf)))));
  o.Set("probeOffset", Napi::Number::New(env, static_cast<double>(offset)));
  o.Set("probeAddr", Napi::Number::New(env, static_cast<double>(addr)));
  return o;
}

}  // namespace ebpfprof

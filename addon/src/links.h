// SPDX-License-Identifier: Apache-2.0
// Attached programs. A LinkSet is shared by the JavaScript handle that the user holds and the
// BpfObject that created it, so BpfObject.close() can detach everything deterministically even if
// the handles are still referenced; closing twice is harmless.
#pragma once
#include <bpf/libbpf.h>
#include <napi.h>

#include <memory>
#include <vector>

namespace ebpfprof {

struct LinkSet {
  std::vector<bpf_link*> links;
  std::vector<int> perf_fds;  // owned by the links (libbpf closes them on destroy)
  std::vector<int> cpus;      // perf events only: cpu of perf_fds[i]
  bool freq_mode = false;
  // For hrtimer-driven software events (cpu-clock, task-clock) the kernel turns a frequency into a
  // fixed period at open and clears attr.freq, so a later PERF_EVENT_IOC_PERIOD value is taken as
  // a period in ns: frequency changes must be refused for them (use period mode instead).
  bool hrtimer_event = false;
  void Close();
  ~LinkSet() { Close(); }
};

// perf_event links: one per CPU, sampling frequency or period changeable while attached.
class PerfLink : public Napi::ObjectWrap<PerfLink> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<LinkSet> set);
  explicit PerfLink(const Napi::CallbackInfo& info);

 private:
  Napi::Value SetFrequency(const Napi::CallbackInfo& info);
  Napi::Value SetPeriod(const Napi::CallbackInfo& info);
  Napi::Value Cpus(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void SetAll(Napi::Env env, uint64_t value, bool want_freq);
  std::shared_ptr<LinkSet> set_;
};

// Any other attachment (tracepoint, raw tracepoint, kprobe, fentry, uprobe): detach with close().
class Link : public Napi::ObjectWrap<Link> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<LinkSet> set);
  explicit Link(const Napi::CallbackInfo& info);

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  std::shared_ptr<LinkSet> set_;
};

}  // namespace ebpfprof

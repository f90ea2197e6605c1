// SPDX-License-Identifier: Apache-2.0
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

#include "addon_data.h"
#include "errors.h"
#include "links.h"

namespace ebpfprof {

void LinkSet::Close() {
  for (bpf_link* l : links) bpf_link__destroy(l);
  links.clear();
  perf_fds.clear();
  cpus.clear();
}

// Wrap(): the constructor receives the LinkSet through an External so JavaScript cannot build one.
template <typename T>
static std::shared_ptr<LinkSet> TakeSet(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowType(info.Env(), "this class is created by BpfObject, not constructed directly");
  auto* holder = info[0].As<Napi::External<std::shared_ptr<LinkSet>>>().Data();
  return *holder;
}

Napi::Function PerfLink::Init(Napi::Env env) {
  return DefineClass(env, "PerfLink",
                     {InstanceMethod<&PerfLink::SetFrequency>("setFrequency"),
                      InstanceMethod<&PerfLink::SetPeriod>("setPeriod"),
                      InstanceMethod<&PerfLink::Cpus>("cpus"),
                      InstanceMethod<&PerfLink::Close>("close")});
}

Napi::Object PerfLink::Wrap(Napi::Env env, std::shared_ptr<LinkSet> set) {
  std::shared_ptr<LinkSet> holder = std::move(set);
  auto ext = Napi::External<std::shared_ptr<LinkSet>>::New(env, &holder);
  return GetAddonData(env)->perf_link.New({ext});
}

PerfLink::PerfLink(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PerfLink>(info), set_(TakeSet<PerfLink>(info)) {}

void PerfLink::SetAll(Napi::Env env, uint64_t value, bool want_freq) {
  if (set_->links.empty()) ThrowPlain(env, "perf link is closed");
  if (want_freq && set_->hrtimer_event)
    ThrowPlain(env, "cpu-clock/task-clock events cannot change frequency while attached: open them in period mode and use setPeriod");
  if (want_freq != set_->freq_mode)
    ThrowPlain(env, want_freq ? "perf link samples by period, not frequency" : "perf link samples by frequency, not period");
  // In frequency mode PERF_EVENT_IOC_PERIOD sets sample_freq (kernel/events/core.c perf_event_period).
  for (size_t i = 0; i < set_->perf_fds.size(); i++) {
    if (ioctl(set_->perf_fds[i], PERF_EVENT_IOC_PERIOD, &value) != 0)
      ThrowErrno(env, "changing the sampling rate on cpu " + std::to_string(set_->cpus[i]), errno, "ioctl");
  }
}

Napi::Value PerfLink::SetFrequency(const Napi::CallbackInfo& info) {
  uint32_t hz = ArgUint32(info, 0, "frequency");
  if (hz == 0) ThrowType(info.Env(), "frequency must be at least 1");
  SetAll(info.Env(), hz, true);
  return info.Env().Undefined();
}

Napi::Value PerfLink::SetPeriod(const Napi::CallbackInfo& info) {
  uint32_t period = ArgUint32(info, 0, "period");
  if (period == 0) ThrowType(info.Env(), "period must be at least 1");
  SetAll(info.Env(), period, false);
  return info.Env().Undefined();
}

Napi::Value PerfLink::Cpus(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env(), set_->cpus.size());
  for (size_t i = 0; i < set_->cpus.size(); i++) out.Set(i, Napi::Number::New(info.Env(), set_->cpus[i]));
  return out;
}

Napi::Value PerfLink::Close(const Napi::CallbackInfo& info) {
  set_->Close();
  return info.Env().Undefined();
}

Napi::Function Link::Init(Napi::Env env) {
  return DefineClass(env, "Link", {InstanceMethod<&Link::Close>("close")});
}

Napi::Object Link::Wrap(Napi::Env env, std::shared_ptr<LinkSet> set) {
  std::shared_ptr<LinkSet> holder = std::move(set);
  auto ext = Napi::External<std::shared_ptr<LinkSet>>::New(env, &holder);
  return GetAddonData(env)->link.New({ext});
}

Link::Link(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Link>(info), set_(TakeSet<Link>(info)) {}

Napi::Value Link::Close(const Napi::CallbackInfo& info) {
  set_->Close();
  return info.Env().Undefined();
}

}  // namespace ebpfprof

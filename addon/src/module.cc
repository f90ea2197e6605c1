// SPDX-License-Identifier: Apache-2.0
// Entry point of the native addon: registers the classes and a few libbpf-level functions.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <malloc.h>
#include <unistd.h>

#include "addon_data.h"
#include "bpf_object.h"
#include "capabilities.h"
#include "errors.h"
#include "libbpf_log.h"
#include "links.h"
#include "ring_buffer.h"

namespace ebpfprof {

static Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

static Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), "reading the possible cpus", n, "libbpf_num_possible_cpus");
  return Napi::Number::New(info.Env(), n);
}

static Napi::Value SetDebug(const Napi::CallbackInfo& info) {
  SetLibbpfDebug(info.Length() > 0 && info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

// probeProgramType(type): 1 if the kernel can load a minimal program of that type, 0 if not.
static Napi::Value ProbeProgramType(const Napi::CallbackInfo& info) {
  int r = libbpf_probe_bpf_prog_type(static_cast<bpf_prog_type>(ArgUint32(info, 0, "type")), nullptr);
  if (r < 0) ThrowErrno(info.Env(), "probing program type", r, "libbpf_probe_bpf_prog_type");
  return Napi::Number::New(info.Env(), r);
}

// enableRunTimeStats(): fd that keeps kernel.bpf_stats_enabled-style accounting on while open.
static Napi::Value EnableRunTimeStats(const Napi::CallbackInfo& info) {
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) ThrowErrno(info.Env(), "enabling BPF run-time statistics", errno, "bpf_enable_stats");
  return Napi::Number::New(info.Env(), fd);
}

// releaseFreeMemory(): returns memory that malloc holds but no longer uses to the kernel
// (malloc_trim). Large transient buffers (a symbol table being built) otherwise stay resident.
static Napi::Value ReleaseFreeMemory(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(static_cast<int>(ArgUint32(info, 0, "fd")));
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfLog();
  auto* data = new AddonData();
  Napi::Function bpf_object = BpfObject::Init(env);
  Napi::Function perf_link = PerfLink::Init(env);
  Napi::Function link = Link::Init(env);
  Napi::Function ring_buffer = RingBuffer::Init(env);
  data->bpf_object = Napi::Persistent(bpf_object);
  data->perf_link = Napi::Persistent(perf_link);
  data->link = Napi::Persistent(link);
  data->ring_buffer = Napi::Persistent(ring_buffer);
  env.SetInstanceData<AddonData>(data);
  exports.Set("BpfObject", bpf_object);
  exports.Set("PerfLink", perf_link);
  exports.Set("Link", link);
  exports.Set("RingBuffer", ring_buffer);
  exports.Set("libbpfVersion", Napi::Function::New<LibbpfVersion>(env, "libbpfVersion"));
  exports.Set("numPossibleCpus", Napi::Function::New<NumPossibleCpus>(env, "numPossibleCpus"));
  exports.Set("setLibbpfDebug", Napi::Function::New<SetDebug>(env, "setLibbpfDebug"));
  exports.Set("probeProgramType", Napi::Function::New<ProbeProgramType>(env, "probeProgramType"));
  exports.Set("enableRunTimeStats", Napi::Function::New<EnableRunTimeStats>(env, "enableRunTimeStats"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("releaseFreeMemory", Napi::Function::New<ReleaseFreeMemory>(env, "releaseFreeMemory"));
  exports.Set("dropCapabilities", Napi::Function::New<DropCapabilities>(env, "dropCapabilities"));
  exports.Set("taskFdQuery", Napi::Function::New<TaskFdQuery>(env, "taskFdQuery"));
  return exports;
}

}  // namespace ebpfprof

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return ebpfprof::Init(env, exports); }

NODE_API_MODULE(ebpfprof_native, InitModule)

// SPDX-License-Identifier: Apache-2.0
// One BPF object file: open, configure (globals, map sizes, autoload), load, attach, map access,
// ring buffers. Generic: nothing here knows what a profile is.
#pragma once
#include <bpf/libbpf.h>
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "links.h"
#include "ring_buffer.h"

namespace ebpfprof {

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit BpfObject(const Napi::CallbackInfo& info);
  ~BpfObject();

 private:
  // Before load.
  Napi::Value SetGlobal(const Napi::CallbackInfo& info);
  Napi::Value SetMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value SetAutoload(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  // Introspection.
  Napi::Value ProgramNames(const Napi::CallbackInfo& info);
  Napi::Value MapNames(const Napi::CallbackInfo& info);
  Napi::Value TypeSize(const Napi::CallbackInfo& info);
  Napi::Value MapInfo(const Napi::CallbackInfo& info);
  Napi::Value ProgramStats(const Napi::CallbackInfo& info);
  // Attach.
  Napi::Value AttachPerfEvent(const Napi::CallbackInfo& info);
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value AttachTracepoint(const Napi::CallbackInfo& info);
  Napi::Value AttachRawTracepoint(const Napi::CallbackInfo& info);
  Napi::Value AttachKprobe(const Napi::CallbackInfo& info);
  Napi::Value AttachUprobe(const Napi::CallbackInfo& info);
  // Maps.
  Napi::Value MapLookup(const Napi::CallbackInfo& info);
  Napi::Value MapUpdate(const Napi::CallbackInfo& info);
  Napi::Value MapDelete(const Napi::CallbackInfo& info);
  Napi::Value MapEntries(const Napi::CallbackInfo& info);
  Napi::Value OpenRingBuffer(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void CloseAll();
  bpf_object* Obj(Napi::Env env, bool must_be_loaded, bool must_be_open);
  bpf_map* FindMap(Napi::Env env, const std::string& name);
  bpf_program* FindProgram(Napi::Env env, const std::string& name);
  Napi::Object Track(Napi::Env env, std::shared_ptr<LinkSet> set, bool perf);
  size_t ValueBytes(bpf_map* map);

  bpf_object* obj_ = nullptr;
  bool loaded_ = false;
  std::string path_;
  std::vector<std::weak_ptr<LinkSet>> link_sets_;
  std::vector<std::weak_ptr<RingBufferState>> ring_buffers_;
};

}  // namespace ebpfprof

// SPDX-License-Identifier: Apache-2.0
// Per-environment state: constructors live here (instance data), never in statics, so the addon
// works in worker threads and several environments at once.
#pragma once
#include <napi.h>

namespace ebpfprof {

struct AddonData {
  Napi::FunctionReference bpf_object;
  Napi::FunctionReference perf_link;
  Napi::FunctionReference link;
  Napi::FunctionReference ring_buffer;
};

inline AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

}  // namespace ebpfprof

// SPDX-License-Identifier: Apache-2.0
// Capability drop for every thread of the process, and BPF_TASK_FD_QUERY (see capabilities.cc).
#pragma once
#include <napi.h>

namespace ebpfprof {

Napi::Value DropCapabilities(const Napi::CallbackInfo& info);
Napi::Value TaskFdQuery(const Napi::CallbackInfo& info);

}  // namespace ebpfprof

// SPDX-License-Identifier: Apache-2.0
// JavaScript errors thrown by the addon: every system failure carries code/errno/syscall like
// Node's own errors, so the TypeScript side can turn EPERM into "missing CAP_BPF" and so on.
#pragma once
#include <napi.h>
#include <string>

namespace ebpfprof {

// Throws Error("<what>: <strerror> [detail]") with .code (e.g. "EPERM"), .errno and .syscall.
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& what, int err,
                             const std::string& syscall, const std::string& detail = "");
Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err, const std::string& syscall,
                       const std::string& detail = "");
[[noreturn]] void ThrowType(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowPlain(Napi::Env env, const std::string& message);

// Argument readers: throw TypeError naming the argument on mismatch.
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);
uint32_t ArgUint32(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Object ArgObject(const Napi::CallbackInfo& info, size_t i, const char* name);
// Reads an optional numeric property; returns `fallback` when absent/undefined.
double OptNumber(const Napi::Object& obj, const char* key, double fallback);

}  // namespace ebpfprof

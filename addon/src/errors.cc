// SPDX-License-Identifier: Apache-2.0
#include "errors.h"

#include <cstring>

namespace ebpfprof {

static const char* ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOSPC: return "ENOSPC";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ESTALE: return "ESTALE";
    default: return "EUNKNOWN";
  }
}

Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err, const std::string& syscall,
                       const std::string& detail) {
  if (err < 0) err = -err;
  std::string message = what + ": " + std::strerror(err);
  if (!detail.empty()) message += "\n" + detail;
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

void ThrowErrno(Napi::Env env, const std::string& what, int err, const std::string& syscall,
                const std::string& detail) {
  throw ErrnoError(env, what, err, syscall, detail);
}

void ThrowType(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

void ThrowPlain(Napi::Env env, const std::string& message) { throw Napi::Error::New(env, message); }

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) ThrowType(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

uint32_t ArgUint32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 4294967295.0 || v != static_cast<double>(static_cast<uint32_t>(v)))
    ThrowType(info.Env(), std::string(name) + " must be an integer in 0..2^32-1");
  return static_cast<uint32_t>(v);
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsBuffer()) ThrowType(info.Env(), std::string(name) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

Napi::Object ArgObject(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsObject()) ThrowType(info.Env(), std::string(name) + " must be an object");
  return info[i].As<Napi::Object>();
}

double OptNumber(const Napi::Object& obj, const char* key, double fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) ThrowType(obj.Env(), std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

}  // namespace ebpfprof

// SPDX-License-Identifier: Apache-2.0
#include "ring_buffer.h"

#include <cerrno>
#include <cstring>

#include "addon_data.h"
#include "errors.h"

namespace ebpfprof {

namespace {

// Batch layout handed to JavaScript: records back to back, each as
//   u32 length (little endian), u32 reserved (0), `length` bytes, zero padding to 8 bytes.
constexpr size_t kHeader = 8;

struct Batch {
  std::vector<uint8_t> bytes;
  uint32_t records = 0;
};

void CallJs(Napi::Env env, Napi::Function callback, RingBufferState* state, Batch* batch);
using Tsfn = Napi::TypedThreadSafeFunction<RingBufferState, Batch, CallJs>;

}  // namespace

struct RingBufferState {
  ring_buffer* rb = nullptr;
  std::thread thread;
  std::atomic<bool> stop{false};
  bool stopped = false;  // main thread only
  Tsfn tsfn;
  Batch pending;  // polling thread only
  size_t max_batch_bytes = 1 << 20;
  std::string map_name;
  std::atomic<uint64_t> records{0}, batches{0}, dropped_records{0}, dropped_batches{0}, poll_errors{0};
  std::atomic<uint64_t> callback_errors{0};
  int last_poll_error = 0;
  std::mutex error_mutex;
  std::string last_callback_error;
  Napi::Promise::Deferred* closed = nullptr;  // resolved when every queued batch was delivered
  // Stops the polling thread when the environment shuts down with the ring buffer still open (the
  // process exits without close()): the thread must not outlive the thread-safe function it uses.
  Napi::Env::CleanupHook<void (*)(RingBufferState*), RingBufferState> cleanup;
  bool has_cleanup = false;
  napi_env env = nullptr;

  void Flush() {
    if (pending.records == 0) return;
    auto* batch = new Batch(std::move(pending));
    pending = Batch();
    uint32_t n = batch->records;
    napi_status status = tsfn.NonBlockingCall(batch);
    if (status != napi_ok) {
      dropped_batches++;
      dropped_records += n;
      delete batch;
    } else {
      batches++;
    }
  }
};

namespace {

void CallJs(Napi::Env env, Napi::Function callback, RingBufferState* state, Batch* batch) {
  std::unique_ptr<Batch> owned(batch);
  if (env == nullptr || batch == nullptr) return;  // environment tearing down
  try {
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::Copy(env, batch->bytes.data(), batch->bytes.size());
    callback.Call({buf, Napi::Number::New(env, batch->records)});
  } catch (const Napi::Error& e) {
    state->callback_errors++;
    std::lock_guard<std::mutex> lock(state->error_mutex);
    state->last_callback_error = e.Message();
  }
}

int OnRecord(void* ctx, void* data, size_t size) {
  auto* state = static_cast<RingBufferState*>(ctx);
  Batch& b = state->pending;
  size_t padded = (size + 7) & ~size_t(7);
  size_t at = b.bytes.size();
  b.bytes.resize(at + kHeader + padded, 0);
  uint32_t len = static_cast<uint32_t>(size);
  std::memcpy(&b.bytes[at], &len, sizeof(len));
  std::memcpy(&b.bytes[at + kHeader], data, size);
  b.records++;
  state->records++;
  if (b.bytes.size() >= state->max_batch_bytes) state->Flush();
  return 0;
}

void PollLoop(RingBufferState* state) {
  while (!state->stop.load(std::memory_order_acquire)) {
    int n = ring_buffer__poll(state->rb, 100 /* ms */);
    if (n < 0 && n != -EINTR) {
      state->poll_errors++;
      state->last_poll_error = -n;
    }
    state->Flush();
  }
  // Whatever the kernel wrote before stop was requested is still delivered.
  ring_buffer__consume(state->rb);
  state->Flush();
  state->tsfn.Release();
}

}  // namespace

Napi::Function RingBuffer::Init(Napi::Env env) {
  return DefineClass(env, "RingBuffer",
                     {InstanceMethod<&RingBuffer::Stats>("stats"), InstanceMethod<&RingBuffer::Close>("close")});
}

Napi::Object RingBuffer::Open(Napi::Env env, int map_fd, const std::string& map_name, Napi::Function callback,
                              uint32_t max_queued_batches, uint32_t max_batch_bytes) {
  auto state = std::make_shared<RingBufferState>();
  state->map_name = map_name;
  state->max_batch_bytes = max_batch_bytes;
  state->rb = ring_buffer__new(map_fd, OnRecord, state.get(), nullptr);
  if (!state->rb) ThrowErrno(env, "opening ring buffer " + map_name, errno, "ring_buffer__new");

  RingBufferState* raw = state.get();
  // The finalizer keeps the state alive until the last queued batch was delivered, whatever
  // happens to the JavaScript handle in between.
  state->tsfn = Tsfn::New(
      env, callback, "ebpfprof-ringbuf-" + map_name, max_queued_batches, 1, raw,
      [](Napi::Env env, std::shared_ptr<RingBufferState>* keep, RingBufferState* s) {
        if (s->closed) {
          s->closed->Resolve(env.Undefined());
          delete s->closed;
          s->closed = nullptr;
        }
        delete keep;
      },
      new std::shared_ptr<RingBufferState>(state));
  // Polling alone must not keep the process alive; close() re-references until delivery ends.
  state->tsfn.Unref(env);
  state->thread = std::thread(PollLoop, raw);
  state->env = env;
  // The hook is consumed by running (node-addon-api frees it): it must not also be removed then.
  state->cleanup = env.AddCleanupHook(
      +[](RingBufferState* s) {
        s->has_cleanup = false;
        StopRingBuffer(*s);
      },
      raw);
  state->has_cleanup = true;

  std::shared_ptr<RingBufferState> holder = state;
  auto ext = Napi::External<std::shared_ptr<RingBufferState>>::New(env, &holder);
  return GetAddonData(env)->ring_buffer.New({ext});
}

RingBuffer::RingBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingBuffer>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowType(info.Env(), "RingBuffer is created by BpfObject.openRingBuffer, not constructed directly");
  state_ = *info[0].As<Napi::External<std::shared_ptr<RingBufferState>>>().Data();
}

bool StopRingBuffer(RingBufferState& state) {
  if (state.stopped) return false;
  state.stopped = true;
  if (state.has_cleanup) {
    state.has_cleanup = false;
    state.cleanup.Remove(Napi::Env(state.env));
  }
  state.stop.store(true, std::memory_order_release);
  if (state.thread.joinable()) state.thread.join();
  ring_buffer__free(state.rb);
  state.rb = nullptr;
  return true;
}

RingBuffer::~RingBuffer() {
  // Garbage collected while still open: stop the thread so it never outlives its handle.
  if (state_) StopRingBuffer(*state_);
}

Napi::Value RingBuffer::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("records", Napi::Number::New(env, static_cast<double>(state_->records.load())));
  o.Set("batches", Napi::Number::New(env, static_cast<double>(state_->batches.load())));
  o.Set("droppedRecords", Napi::Number::New(env, static_cast<double>(state_->dropped_records.load())));
  o.Set("droppedBatches", Napi::Number::New(env, static_cast<double>(state_->dropped_batches.load())));
  o.Set("pollErrors", Napi::Number::New(env, static_cast<double>(state_->poll_errors.load())));
  o.Set("callbackErrors", Napi::Number::New(env, static_cast<double>(state_->callback_errors.load())));
  std::lock_guard<std::mutex> lock(state_->error_mutex);
  if (!state_->last_callback_error.empty())
    o.Set("lastCallbackError", Napi::String::New(env, state_->last_callback_error));
  return o;
}

// close(): Promise resolved once every batch read before the stop has been delivered to the callback.
Napi::Value RingBuffer::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  Napi::Promise promise = deferred.Promise();
  if (state_->stopped) {
    deferred.Resolve(env.Undefined());
    return promise;
  }
  state_->closed = new Napi::Promise::Deferred(deferred);
  state_->tsfn.Ref(env);
  StopRingBuffer(*state_);
  return promise;
}

}  // namespace ebpfprof

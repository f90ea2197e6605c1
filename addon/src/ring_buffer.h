// SPDX-License-Identifier: Apache-2.0
// A BPF ring buffer polled on its own thread. Records are gathered into batches and handed to
// JavaScript through a thread-safe function with a bounded queue: one JS call per batch, never one
// per record. A batch that finds the queue full is dropped and counted.
#pragma once
#include <bpf/libbpf.h>
#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ebpfprof {

struct RingBufferState;

class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
 public:
  static Napi::Function Init(Napi::Env env);
  // Starts polling map_fd; `callback(batch: Buffer, records: number)` gets each batch.
  static Napi::Object Open(Napi::Env env, int map_fd, const std::string& map_name, Napi::Function callback,
                           uint32_t max_queued_batches, uint32_t max_batch_bytes);
  explicit RingBuffer(const Napi::CallbackInfo& info);
  ~RingBuffer();
  std::shared_ptr<RingBufferState> state() { return state_; }

 private:
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  std::shared_ptr<RingBufferState> state_;
};

// Stops the polling thread (after one last consume) and frees the ring buffer. Safe to call twice.
// Returns false if it was already stopped.
bool StopRingBuffer(RingBufferState& state);

}  // namespace ebpfprof

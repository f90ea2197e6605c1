// SPDX-License-Identifier: Apache-2.0
// The seeded PRNG of every fuzz test (mulberry32): the same inputs on every run, so a failure
// reproduces.

/** Floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integers in [0, n). */
export function intPrng(seed: number): (n: number) => number {
  const r = prng(seed);
  return (n) => Math.floor(r() * n);
}

// SPDX-License-Identifier: Apache-2.0
/**
 * CRC-32 (IEEE, as zlib and GDB's .gnu_debuglink use it), incremental so a debug file can be
 * checked chunk by chunk without holding it in memory.
 */

const TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** Continues a CRC over `data`; start with crc = 0. */
export function crc32(data: Uint8Array, crc: number = 0): number {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

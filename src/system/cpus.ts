// SPDX-License-Identifier: Apache-2.0
/** CPU lists as the kernel prints them (/sys/devices/system/cpu/online: "0-3,8,10-11"). */
import * as fs from 'node:fs';
import { EbpfprofError } from '../errors';

/** Parses a kernel cpu list. Throws EINPUT on anything that is not one. */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  const trimmed = text.trim();
  if (trimmed === '') return out;
  for (const part of trimmed.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new EbpfprofError('EINPUT', `malformed cpu list ${JSON.stringify(text)}: bad part ${JSON.stringify(part)}`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from || to - from > 65536) throw new EbpfprofError('EINPUT', `malformed cpu list ${JSON.stringify(text)}: bad range ${part}`);
    for (let c = from; c <= to; c++) out.push(c);
  }
  return out;
}

export function onlineCpus(path = '/sys/devices/system/cpu/online'): number[] {
  const cpus = parseCpuList(fs.readFileSync(path, 'utf8'));
  if (cpus.length === 0) throw new EbpfprofError('EKERNEL', `${path} lists no online cpu`);
  return cpus;
}

// SPDX-License-Identifier: Apache-2.0
/**
 * Folded stacks (`frame;frame;...;leaf COUNT` per line, root first) → Profile.
 *
 * Reads what encode/folded.ts writes and what perf's stackcollapse-perf.pl, inferno and most
 * profilers' "collapsed" output write:
 * - the count is the text after the last space or tab and must be a non-negative integer;
 * - by default the first frame is the process (ebpfprof and stackcollapse-perf put the comm there),
 *   optionally `name-PID/TID`; pass `firstFrameIsProcess: false` for files whose first frame is code;
 * - `_[k]`, `_[j]`, `_[i]` suffixes (stackcollapse-perf --all) mark kernel, JIT and inlined frames and
 *   are stripped; names that look like `module+0xoff`, `0xaddr` or `[unknown]` are unsymbolized;
 * - empty lines are skipped, CRLF is accepted, invalid UTF-8 becomes U+FFFD rather than an error
 *   (one odd byte in a symbol should not make a whole profile unreadable).
 * Anything else is EbpfprofError('EINPUT') naming the line.
 */
import { EbpfprofError } from '../errors';
import { ProfileBuilder, type FrameKind, type Profile } from '../profile/model';
import { looksUnsymbolized } from './pprof';

export interface FoldedDecodeOptions {
  /** The first frame of each line names the process (default true). */
  firstFrameIsProcess?: boolean;
  /** What the counts are: samples (default) or CPU nanoseconds. */
  weight?: 'samples' | 'cpu-ns';
  /** Nominal CPU time per sample, to derive cpuNs from counts or counts from cpuNs (0: unknown). */
  periodNs?: number;
}

const KIND_SUFFIXES: ReadonlyArray<[string, FrameKind]> = [
  ['_[k]', 'kernel'],
  ['_[j]', 'jit'],
  ['_[i]', 'native'],
];

function excerpt(line: string): string {
  return JSON.stringify(line.length > 80 ? `${line.slice(0, 77)}...` : line);
}

export function decodeFolded(bytes: Buffer, fileName?: string, options: FoldedDecodeOptions = {}): Profile {
  const firstIsProcess = options.firstFrameIsProcess !== false;
  const byCpu = options.weight === 'cpu-ns';
  const periodNs = options.periodNs !== undefined && options.periodNs > 0 ? options.periodNs : 0;
  const fail = (lineNo: number, msg: string): EbpfprofError =>
    new EbpfprofError('EINPUT', `cannot read ${fileName ?? 'input'} as folded stacks: line ${lineNo}: ${msg}`);

  const b = new ProfileBuilder({
    startTimeMs: 0,
    durationNs: 0,
    frequencyHz: periodNs > 0 ? Math.round(1e9 / periodNs) : 0,
    periodNs,
    comments: [],
  });
  const frameIds = new Map<string, number>();
  const frameId = (text: string): number => {
    let id = frameIds.get(text);
    if (id === undefined) {
      let name = text;
      let kind: FrameKind = 'unknown';
      for (const [suffix, k] of KIND_SUFFIXES) {
        if (name.endsWith(suffix) && name.length > suffix.length) {
          name = name.slice(0, -suffix.length);
          kind = k;
          break;
        }
      }
      if (name === '') name = '[unknown]';
      id = b.frame({ kind, name, systemName: '', mapping: -1, address: 0n, symbolized: !looksUnsymbolized(name) });
      frameIds.set(text, id);
    }
    return id;
  };

  const text = new TextDecoder('utf-8').decode(bytes);
  const lines = text.split('\n');
  let total = 0;
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let line = lines[i]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() === '') continue;
    const sp = Math.max(line.lastIndexOf(' '), line.lastIndexOf('\t'));
    if (sp < 0) throw fail(lineNo, `no sample count at the end of ${excerpt(line)} (expected "frame;frame;... COUNT")`);
    const countText = line.slice(sp + 1);
    const stackText = line.slice(0, sp);
    if (!/^\d+$/.test(countText)) {
      const why = /^-\d/.test(countText) ? 'a negative count' : /^\d*\.\d*$/.test(countText) && countText !== '.' ? 'a fractional count' : 'not a count';
      throw fail(lineNo, `${JSON.stringify(countText.slice(0, 40))} is ${why}; expected a non-negative integer after the last space`);
    }
    const value = Number(countText);
    if (!Number.isSafeInteger(value)) throw fail(lineNo, `count ${countText.slice(0, 40)} is too large (more than 2^53)`);
    total += value;
    if (!Number.isSafeInteger(total)) throw fail(lineNo, 'the counts add up to more than 2^53');
    if (stackText.trim() === '') throw fail(lineNo, `no frames before the count in ${excerpt(line)}`);

    const parts = stackText.split(';');
    let processName = '';
    let pid = 0;
    let tid = 0;
    if (firstIsProcess) {
      const head = parts.shift()!;
      const m = /^(.*)-(\d+)\/(\d+)$/.exec(head);
      if (m && Number.isSafeInteger(Number(m[2])) && Number.isSafeInteger(Number(m[3]))) {
        processName = m[1]!;
        pid = Number(m[2]);
        tid = Number(m[3]);
      } else processName = head;
    }
    const stack: number[] = new Array<number>(parts.length);
    // The model stores stacks leaf first.
    for (let j = 0; j < parts.length; j++) stack[parts.length - 1 - j] = frameId(parts[j]!);

    let count: number;
    let cpuNs: number;
    if (byCpu) {
      cpuNs = value;
      count = periodNs > 0 ? Math.round(value / periodNs) : 0;
    } else {
      count = value;
      cpuNs = periodNs > 0 ? value * periodNs : 0;
    }
    b.addSample({ stack: b.stack(stack), pid, tid, processName, threadName: '', count, cpuNs });
  }
  return b.build();
}

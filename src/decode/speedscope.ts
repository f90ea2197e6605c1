// SPDX-License-Identifier: Apache-2.0
/**
 * speedscope JSON (https://www.speedscope.app/file-format-schema.json) → Profile.
 *
 * - Each speedscope profile becomes the samples of one process: a name "NAME (pid N)" (what
 *   encode/speedscope.ts writes) gives process name and pid, any other name is the process name with
 *   pid 0. Threads are not in the format: tid 0, thread name ''.
 * - Weights: unit "none" (or "bytes") are counts; time units are converted to cpuNs. A time-weighted
 *   file does not say how many samples it holds, so those rows get count 0 — nothing is invented.
 * - "evented" profiles are turned into self time per stack between consecutive events.
 * - Frame `file` becomes the frame's mapping path (kernel/JIT kinds are inferred from it).
 * Everything is checked against the schema's shape; failures are EbpfprofError('EINPUT') with the
 * JSON path of the offending value.
 */
import { EbpfprofError } from '../errors';
import { ProfileBuilder, type Profile } from '../profile/model';
import { SPEEDSCOPE_SCHEMA_URL } from '../encode/speedscope';
import { frameKindForPath, looksUnsymbolized } from './pprof';

const TIME_UNITS_NS: Readonly<Record<string, number>> = {
  nanoseconds: 1,
  microseconds: 1e3,
  milliseconds: 1e6,
  seconds: 1e9,
};
const COUNT_UNITS = new Set(['none', 'bytes']);

class Invalid extends Error {}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is { [k: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function nonNegativeFinite(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Invalid(`${where} must be a finite number`);
  if (v < 0) throw new Invalid(`${where} is negative (${v})`);
  return v;
}

/** Whether parsed JSON declares itself a speedscope file. */
export function isSpeedscopeJson(v: unknown): boolean {
  return isObject(v) && v['$schema'] === SPEEDSCOPE_SCHEMA_URL;
}

/** Decodes speedscope JSON given as bytes. */
export function decodeSpeedscope(bytes: Buffer, fileName?: string): Profile {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8').decode(bytes)); // TextDecoder drops a BOM
  } catch (e) {
    throw new EbpfprofError('EINPUT', `cannot read ${fileName ?? 'input'} as speedscope JSON: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return decodeSpeedscopeDocument(doc, fileName);
}

/** Decodes an already parsed speedscope document. */
export function decodeSpeedscopeDocument(doc: unknown, fileName?: string): Profile {
  try {
    return toModel(doc);
  } catch (e) {
    if (e instanceof Invalid) throw new EbpfprofError('EINPUT', `cannot read ${fileName ?? 'input'} as speedscope JSON: ${e.message}`, { cause: e });
    throw e;
  }
}

function toModel(doc: unknown): Profile {
  if (!isObject(doc)) throw new Invalid('the top level is not an object');
  if (doc['$schema'] !== SPEEDSCOPE_SCHEMA_URL) throw new Invalid(`$schema is not "${SPEEDSCOPE_SCHEMA_URL}"`);
  const shared = doc['shared'];
  if (!isObject(shared) || !Array.isArray(shared['frames'])) throw new Invalid('shared.frames is missing or not an array');
  const profiles = doc['profiles'];
  if (!Array.isArray(profiles)) throw new Invalid('profiles is missing or not an array');

  const b = new ProfileBuilder({ startTimeMs: 0, durationNs: 0, frequencyHz: 0, periodNs: 0, comments: [] });
  const exporter = doc['exporter'];
  if (typeof exporter === 'string' && exporter !== '') b.addComment(`speedscope exporter: ${exporter}`);

  const rawFrames = shared['frames'];
  const frameIds: number[] = rawFrames.map((f, i) => {
    const where = `shared.frames[${i}]`;
    if (!isObject(f)) throw new Invalid(`${where} is not an object`);
    const name = f['name'];
    if (typeof name !== 'string') throw new Invalid(`${where}.name is missing or not a string`);
    const file = f['file'];
    if (file !== undefined && typeof file !== 'string') throw new Invalid(`${where}.file is not a string`);
    for (const k of ['line', 'col'] as const) {
      if (f[k] !== undefined && typeof f[k] !== 'number') throw new Invalid(`${where}.${k} is not a number`);
    }
    const mapping = file ? b.mapping({ start: 0n, limit: 0n, fileOffset: 0n, path: file, buildId: '' }) : -1;
    return b.frame({
      kind: file ? frameKindForPath(file) : 'unknown',
      name,
      systemName: '',
      mapping,
      address: 0n,
      symbolized: !looksUnsymbolized(name),
    });
  });
  const frameAt = (v: unknown, where: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= frameIds.length) {
      throw new Invalid(`${where} is not a valid index into shared.frames (${frameIds.length} frames)`);
    }
    return frameIds[v]!;
  };

  let total = 0;
  profiles.forEach((p, pi) => {
    const where = `profiles[${pi}]`;
    if (!isObject(p)) throw new Invalid(`${where} is not an object`);
    const name = p['name'];
    if (typeof name !== 'string') throw new Invalid(`${where}.name is missing or not a string`);
    const unit = p['unit'];
    if (typeof unit !== 'string' || (!(unit in TIME_UNITS_NS) && !COUNT_UNITS.has(unit))) {
      throw new Invalid(`${where}.unit ${JSON.stringify(unit)} is not one of none, bytes, nanoseconds, microseconds, milliseconds, seconds`);
    }
    const startValue = p['startValue'];
    const endValue = p['endValue'];
    if (typeof startValue !== 'number' || !Number.isFinite(startValue)) throw new Invalid(`${where}.startValue must be a finite number`);
    if (typeof endValue !== 'number' || !Number.isFinite(endValue)) throw new Invalid(`${where}.endValue must be a finite number`);

    const m = /^(.*) \(pid (\d+)\)$/.exec(name);
    const processName = m ? m[1]! : name;
    const pid = m && Number.isSafeInteger(Number(m[2])) ? Number(m[2]) : 0;
    const nsPerUnit = TIME_UNITS_NS[unit];
    const add = (stackLeafFirst: number[], weight: number, w: string): void => {
      const count = nsPerUnit === undefined ? Math.round(weight) : 0;
      const cpuNs = nsPerUnit === undefined ? 0 : Math.round(weight * nsPerUnit);
      total += count + cpuNs;
      if (!Number.isSafeInteger(total)) throw new Invalid(`${w}: the weights add up to more than 2^53`);
      if (count === 0 && cpuNs === 0) return;
      b.addSample({ stack: b.stack(stackLeafFirst), pid, tid: 0, processName, threadName: '', count, cpuNs });
    };

    const type = p['type'];
    if (type === 'sampled') {
      const samples = p['samples'];
      const weights = p['weights'];
      if (!Array.isArray(samples)) throw new Invalid(`${where}.samples is missing or not an array`);
      if (!Array.isArray(weights)) throw new Invalid(`${where}.weights is missing or not an array`);
      if (weights.length !== samples.length) throw new Invalid(`${where} has ${samples.length} samples but ${weights.length} weights`);
      samples.forEach((s, si) => {
        const sw = `${where}.samples[${si}]`;
        if (!Array.isArray(s)) throw new Invalid(`${sw} is not an array`);
        const stack = new Array<number>(s.length);
        // speedscope lists root first; the model leaf first.
        for (let k = 0; k < s.length; k++) stack[s.length - 1 - k] = frameAt(s[k], `${sw}[${k}]`);
        add(stack, nonNegativeFinite(weights[si], `${where}.weights[${si}]`), sw);
      });
    } else if (type === 'evented') {
      const events = p['events'];
      if (!Array.isArray(events)) throw new Invalid(`${where}.events is missing or not an array`);
      const open: number[] = []; // frame ids, root first
      const openRaw: number[] = [];
      let last = startValue;
      events.forEach((ev, ei) => {
        const ew = `${where}.events[${ei}]`;
        if (!isObject(ev)) throw new Invalid(`${ew} is not an object`);
        const at = ev['at'];
        if (typeof at !== 'number' || !Number.isFinite(at)) throw new Invalid(`${ew}.at must be a finite number`);
        if (at < last) throw new Invalid(`${ew}.at (${at}) goes back in time (previous ${last})`);
        const frame = frameAt(ev['frame'], `${ew}.frame`);
        if (open.length > 0 && at > last) add(open.slice().reverse(), at - last, ew);
        last = at;
        if (ev['type'] === 'O') {
          open.push(frame);
          openRaw.push(ev['frame'] as number);
        } else if (ev['type'] === 'C') {
          if (open.length === 0 || open[open.length - 1] !== frame) {
            throw new Invalid(`${ew} closes frame ${String(ev['frame'])}, but the innermost open frame is ${open.length ? String(openRaw[openRaw.length - 1]) : 'none'}`);
          }
          open.pop();
          openRaw.pop();
        } else throw new Invalid(`${ew}.type must be "O" or "C"`);
      });
      if (open.length > 0) throw new Invalid(`${where} ends with ${open.length} frame(s) still open`);
    } else throw new Invalid(`${where}.type ${JSON.stringify(type)} is neither "sampled" nor "evented"`);
  });
  return b.build();
}

// SPDX-License-Identifier: Apache-2.0
/** Parsers of command-line values. Each throws EbpfprofError('EBADARG') naming the flag. */
import { EbpfprofError } from '../src/errors';

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "10s", "500ms", "2m", "1h", "1.5s"; a bare number means seconds (as perf's sleep). */
export function parseDuration(text: string, flag = '--duration'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) throw new EbpfprofError('EBADARG', `${flag} must be a duration such as 10s, 500ms or 2m, got ${JSON.stringify(text)}`);
  const ms = Number(m[1]) * UNITS_MS[m[2] ?? 's']!;
  if (!(ms >= 1) || !Number.isFinite(ms)) throw new EbpfprofError('EBADARG', `${flag} must be at least 1ms, got ${JSON.stringify(text)}`);
  if (ms > 366 * 24 * 3_600_000) throw new EbpfprofError('EBADARG', `${flag} must be at most a year, got ${JSON.stringify(text)}`);
  return Math.round(ms);
}

export function parseIntegerIn(text: string, flag: string, min: number, max: number, unit = ''): number {
  if (!/^\s*\d+\s*$/.test(text)) throw new EbpfprofError('EBADARG', `${flag} must be an integer from ${min} to ${max}${unit}, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (n < min || n > max) throw new EbpfprofError('EBADARG', `${flag} must be from ${min} to ${max}${unit}, got ${n}`);
  return n;
}

export function parsePid(text: string): number {
  return parseIntegerIn(text, '--pid', 1, 4_194_304);
}

export function parseChoice<T extends string>(text: string, flag: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(text)) {
    throw new EbpfprofError('EBADARG', `${flag} must be one of ${choices.join(', ')}, got ${JSON.stringify(text)}`);
  }
  return text as T;
}

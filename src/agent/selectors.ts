// SPDX-License-Identifier: Apache-2.0
/**
 * Process selectors of the agent's filter, matched against a process's resource attributes
 * (process.executable.name, k8s.namespace.name, container.id, process.pid, ...):
 *
 *   "k8s.namespace.name=shop,process.executable.name=~^(java|node)$"
 *
 * A selector is a list of requirements that must all hold (written comma-separated, or as a YAML
 * list when a value itself contains a comma). Operators: `=` (equal), `!=` (not equal, also true
 * when the attribute is absent, as in Kubernetes label selectors), `=~` (regular expression
 * matches), `!~` (does not match, or absent). Pure parsing; errors name the selector and say why.
 */
import { EbpfprofError } from '../errors';
import type { Attributes } from '../encode/otlp/semconv';

export type SelectorOp = '=' | '!=' | '=~' | '!~';

export interface Requirement {
  key: string;
  op: SelectorOp;
  value: string;
  /** Compiled for =~ and !~. */
  regex: RegExp | null;
}

export interface Selector {
  /** As written, for messages and GET /config. */
  text: string;
  requirements: Requirement[];
}

const KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const MAX_SELECTOR_LENGTH = 4096;

export function parseRequirement(text: string, where: string): Requirement {
  const m = /^\s*([^=!~\s]+)\s*(=~|!~|!=|==|=)\s*(.*?)\s*$/.exec(text);
  if (!m) throw new EbpfprofError('EBADARG', `${where}: ${JSON.stringify(text)} is not a requirement such as key=value, key!=value, key=~regex or key!~regex`);
  const key = m[1]!;
  if (!KEY.test(key)) throw new EbpfprofError('EBADARG', `${where}: ${JSON.stringify(key)} is not an attribute name`);
  const op = (m[2] === '==' ? '=' : m[2]) as SelectorOp;
  const value = m[3]!;
  let regex: RegExp | null = null;
  if (op === '=~' || op === '!~') {
    try {
      regex = new RegExp(value);
    } catch (e) {
      throw new EbpfprofError('EBADARG', `${where}: ${JSON.stringify(value)} is not a valid regular expression (${(e as Error).message})`);
    }
  }
  return { key, op, value, regex };
}

/** A selector from a string of comma-separated requirements, or from a list of requirements. */
export function parseSelector(input: unknown, where: string): Selector {
  let parts: string[];
  if (typeof input === 'string') parts = input.split(',');
  else if (Array.isArray(input) && input.every((x) => typeof x === 'string')) parts = input as string[];
  else throw new EbpfprofError('EBADARG', `${where} must be a string such as "k8s.namespace.name=shop" or a list of such requirements`);
  const text = parts.join(',');
  if (text.length > MAX_SELECTOR_LENGTH) throw new EbpfprofError('EBADARG', `${where} is longer than ${MAX_SELECTOR_LENGTH} characters`);
  const requirements = parts.filter((p) => p.trim() !== '').map((p) => parseRequirement(p, where));
  if (requirements.length === 0) throw new EbpfprofError('EBADARG', `${where} is empty: write at least one requirement such as process.executable.name=nginx`);
  return { text, requirements };
}

function valueOf(attrs: Attributes, key: string): string | null {
  const v = attrs[key];
  return v === undefined ? null : String(v);
}

export function matchesRequirement(r: Requirement, attrs: Attributes): boolean {
  const v = valueOf(attrs, r.key);
  switch (r.op) {
    case '=':
      return v === r.value;
    case '!=':
      return v !== r.value;
    case '=~':
      return v !== null && r.regex!.test(v);
    case '!~':
      return v === null || !r.regex!.test(v);
  }
}

export function matchesSelector(s: Selector, attrs: Attributes): boolean {
  return s.requirements.every((r) => matchesRequirement(r, attrs));
}

export interface ProcessFilter {
  /** Empty: every process. Otherwise a process must match one of them. */
  include: Selector[];
  /** A process that matches any of them is left out. */
  exclude: Selector[];
}

export function processIncluded(filter: ProcessFilter, attrs: Attributes): boolean {
  if (filter.include.length > 0 && !filter.include.some((s) => matchesSelector(s, attrs))) return false;
  return !filter.exclude.some((s) => matchesSelector(s, attrs));
}

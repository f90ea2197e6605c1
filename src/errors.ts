// SPDX-License-Identifier: Apache-2.0
/**
 * Errors ebpfprof reports to users. Every error has a stable `code` and a message that says what
 * was being done and what to do about it; the CLI prints the message on one line and exits non-zero.
 */

export type ErrorCode =
  | 'EBADARG' // a flag, option or config value is invalid
  | 'ENOPROC' // the target process does not exist (or exited)
  | 'EPRIVILEGE' // missing capabilities or permissions
  | 'ENOBTF' // the kernel has no BTF, CO-RE programs cannot load
  | 'EKERNEL' // the kernel refused something (load, attach, perf_event_open) for another reason
  | 'EOUTPUT' // the output cannot be written
  | 'EINPUT' // an input file cannot be read or parsed
  | 'ENATIVE' // the native addon or a BPF object is missing or broken
  | 'EBROWSER' // no browser could be started for --open
  | 'ESTRICT' // strict mode refuses an action on an observed process (src/system/intrusion-policy.ts)
  | 'ENOTIMPLEMENTED' // an enhanced-mode item is enabled but no feature implements it
  | 'EINTERRUPTED'; // stopped by Ctrl-C before it could finish

export class EbpfprofError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EbpfprofError';
    this.code = code;
  }
}

/** A system error as thrown by Node and by our addon: carries errno name, number and syscall. */
export interface SystemError extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
}

export function isSystemError(e: unknown, code?: string): e is SystemError {
  return e instanceof Error && typeof (e as SystemError).code === 'string' && (code === undefined || (e as SystemError).code === code);
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

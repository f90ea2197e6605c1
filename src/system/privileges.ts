// SPDX-License-Identifier: Apache-2.0
/**
 * Privilege and kernel checks that commands run before they load anything, and the translation of
 * kernel errors (errno codes thrown by the addon) into one clear EbpfprofError line that says what
 * is missing and what to do. The detailed "why" for every feature is `ebpfprof doctor`
 * (kernel-features.ts); these are the fast checks on the hot path of `record` and `agent`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { EbpfprofError, errorMessage, isSystemError, type ErrorCode } from '../errors';
import { CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_RESOURCE, hasCapability, readCapabilities, type ProcessCapabilities } from './capabilities';
import { DEFAULT_BTF_PATH, kernelAtLeast, parseKernelRelease } from './kernel-features';

export interface PrivilegeOptions {
  /** Capabilities to judge (default: this process's, from /proc/self/status). */
  capabilities?: ProcessCapabilities;
  /** Kernel release to judge (default os.release()). */
  kernelRelease?: string;
  /** Kernel BTF (default /sys/kernel/btf/vmlinux). Tests point it at a missing file: a kernel
   * without BTF cannot be produced on the test machine. */
  btfPath?: string;
}

export interface KernelErrorContext extends PrivilegeOptions {
  /** The sampling frequency that was requested, to explain EINVAL from perf_event_open. */
  frequencyHz?: number;
  /** The target process, to explain ESRCH. */
  pid?: number;
}

type CapName = 'CAP_BPF' | 'CAP_PERFMON' | 'CAP_SYS_ADMIN';

function ownCapabilities(options: PrivilegeOptions): ProcessCapabilities | undefined {
  if (options.capabilities) return options.capabilities;
  try {
    return readCapabilities('self');
  } catch {
    return undefined;
  }
}

/**
 * The capabilities profiling still lacks: [] when it can profile. CAP_BPF + CAP_PERFMON on 5.8+,
 * where CAP_SYS_ADMIN also covers both; CAP_SYS_ADMIN before 5.8. undefined if unknown.
 */
export function missingProfilingCapabilities(options: PrivilegeOptions = {}): CapName[] | undefined {
  const caps = ownCapabilities(options);
  if (!caps) return undefined;
  const has = (bit: number): boolean => hasCapability(caps.effective, bit);
  if (has(CAP_SYS_ADMIN)) return [];
  const version = parseKernelRelease(options.kernelRelease ?? os.release());
  if (!kernelAtLeast(version, 5, 8)) return ['CAP_SYS_ADMIN'];
  const missing: CapName[] = [];
  if (!has(CAP_BPF)) missing.push('CAP_BPF');
  if (!has(CAP_PERFMON)) missing.push('CAP_PERFMON');
  return missing;
}

function joinAnd(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/** The one line telling the user which capabilities are missing and how to run. */
function privilegeMessage(missing: CapName[], options: PrivilegeOptions): string {
  const caps = ownCapabilities(options);
  const release = options.kernelRelease ?? os.release();
  const setcap = missing.map((c) => c.toLowerCase()).join(',');
  const inContainer = caps?.uids?.effective === 0 ? ` (uid 0 without them: in a container, add ${missing.map((c) => `--cap-add=${c.slice(4)}`).join(' ')})` : '';
  if (missing.includes('CAP_SYS_ADMIN')) {
    return `missing CAP_SYS_ADMIN: on Linux ${release} (before 5.8, which introduced CAP_BPF and CAP_PERFMON) profiling needs CAP_SYS_ADMIN or root${inContainer}; run with sudo, or grant it to node: sudo setcap cap_sys_admin+ep ${process.execPath}`;
  }
  const has = missing.length === 1 ? ` (${missing[0] === 'CAP_BPF' ? 'CAP_PERFMON' : 'CAP_BPF'} is held)` : '';
  return `missing ${joinAnd(missing)}${has}: profiling needs CAP_BPF and CAP_PERFMON (or root) to load BPF programs and open perf events${inContainer}; run with sudo, or grant them to node: sudo setcap ${setcap}+ep ${process.execPath}`;
}

/**
 * Throws EPRIVILEGE, with one line naming the missing capabilities and how to run, unless this
 * process can load BPF programs and open CPU-wide perf events. When /proc/self/status cannot be
 * read it does not guess: the kernel decides, and explainKernelError() explains its refusal.
 */
export function assertCanProfile(options: PrivilegeOptions = {}): void {
  const missing = missingProfilingCapabilities(options);
  if (missing && missing.length > 0) throw new EbpfprofError('EPRIVILEGE', privilegeMessage(missing, options));
}

/**
 * Throws unless the kernel can run ebpfprof's CO-RE programs: ENOBTF without kernel BTF, EKERNEL
 * before Linux 5.8 (no BPF ring buffer).
 */
export function assertKernelSupportsProfiling(options: PrivilegeOptions = {}): void {
  const btfPath = options.btfPath ?? DEFAULT_BTF_PATH;
  let size = 0;
  try {
    size = fs.statSync(btfPath).size;
  } catch {
    size = 0;
  }
  if (size === 0) {
    throw new EbpfprofError(
      'ENOBTF',
      `this kernel has no BTF type information (${btfPath} is missing): ebpfprof's CO-RE BPF programs need it to find the fields they read in this kernel's structs; use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian 11+, Ubuntu 20.10+, RHEL 8.2+ and Fedora 31+ kernels are)`,
    );
  }
  const release = options.kernelRelease ?? os.release();
  const version = parseKernelRelease(release);
  if (version && !kernelAtLeast(version, 5, 8)) {
    throw new EbpfprofError('EKERNEL', `Linux ${release} is too old: ebpfprof needs 5.8 or newer (BPF ring buffer, CAP_BPF and CAP_PERFMON); upgrade the kernel`);
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0]!;
}

/** The integer a /proc or /sys file holds (a sysctl), or undefined when it is unreadable or not one. */
export function readIntFile(file: string): number | undefined {
  try {
    const t = fs.readFileSync(file, 'utf8').trim();
    return /^-?\d+$/.test(t) ? Number(t) : undefined;
  } catch {
    return undefined;
  }
}

function tracefsMounted(): boolean {
  return ['/sys/kernel/tracing/events', '/sys/kernel/debug/tracing/events'].some((p) => fs.existsSync(p));
}

/**
 * Turns an error from the addon (code/errno/syscall as Node's system errors carry them) into an
 * EbpfprofError with one line that says what was being done, what the kernel refused, and what to
 * do. An EbpfprofError passes through unchanged. The original error stays available as `cause`.
 */
export function explainKernelError(e: unknown, whatWasBeingDone: string, context: KernelErrorContext = {}): EbpfprofError {
  if (e instanceof EbpfprofError) return e;
  const what = whatWasBeingDone;
  const make = (code: ErrorCode, message: string): EbpfprofError => new EbpfprofError(code, `${what}: ${message}`, { cause: e });
  if (!isSystemError(e)) return make('EKERNEL', firstLine(errorMessage(e)));

  const code = e.code;
  const syscall = e.syscall ?? '';
  const original = firstLine(e.message);
  const perf = syscall === 'perf_event_open';
  const load = syscall === 'bpf_object__load';
  const release = context.kernelRelease ?? os.release();
  const version = parseKernelRelease(release);

  switch (code) {
    case 'EPERM':
    case 'EACCES': {
      const missing = missingProfilingCapabilities(context);
      if (missing && missing.length > 0) return make('EPRIVILEGE', `${perf ? 'perf_event_open' : 'the bpf() syscall'} was refused (${code}): ${privilegeMessage(missing, context)}`);
      const caps = ownCapabilities(context);
      if (load && !kernelAtLeast(version, 5, 11) && caps && !hasCapability(caps.effective, CAP_SYS_RESOURCE)) {
        return make('EPRIVILEGE', `the kernel refused (${code}): on Linux ${release} (< 5.11) BPF maps count against RLIMIT_MEMLOCK; raise it (ulimit -l unlimited) or grant CAP_SYS_RESOURCE`);
      }
      return make(
        'EPRIVILEGE',
        `the kernel refused ${perf ? 'perf_event_open' : 'it'} (${code}) although this process holds the needed capabilities: a seccomp profile (in a container: allow bpf and perf_event_open, or run it privileged), a security module or kernel lockdown blocks it; 'ebpfprof doctor' shows which features work`,
      );
    }
    case 'ENOENT': {
      if (load && !fs.existsSync(context.btfPath ?? DEFAULT_BTF_PATH)) {
        return make('ENOBTF', 'the kernel has no BTF (/sys/kernel/btf/vmlinux is missing), which CO-RE programs need: use a kernel built with CONFIG_DEBUG_INFO_BTF=y');
      }
      if (/kprobe/.test(original)) return make('EKERNEL', `kprobes are not available on this kernel (built without CONFIG_KPROBE_EVENTS?): ${original}; 'ebpfprof doctor' shows the fallback in use`);
      if (/tracepoint/.test(original) && !/raw tracepoint/.test(original) && !tracefsMounted()) {
        return make('EKERNEL', 'tracefs is not mounted, so the tracepoint cannot be found: mount -t tracefs nodev /sys/kernel/tracing');
      }
      if (/tracepoint/.test(original)) return make('EKERNEL', `this kernel has no such tracepoint: ${original}`);
      return make('EKERNEL', `${original} (ENOENT)`);
    }
    case 'EINVAL': {
      if (perf) {
        const max = readIntFile('/proc/sys/kernel/perf_event_max_sample_rate');
        if (context.frequencyHz !== undefined && max !== undefined && context.frequencyHz > max) {
          return make(
            'EBADARG',
            `--freq ${context.frequencyHz} is above the kernel's maximum sample rate of ${max} Hz (/proc/sys/kernel/perf_event_max_sample_rate): use --freq ${max} or less, or raise it with sysctl -w kernel.perf_event_max_sample_rate=${context.frequencyHz}`,
          );
        }
      }
      return make('EKERNEL', `the kernel rejected the request as invalid (EINVAL): ${original}`);
    }
    case 'ESRCH':
      return make('ENOPROC', `${context.pid !== undefined ? `process ${context.pid}` : 'the target process'} does not exist (it may have exited)`);
    case 'ENODEV':
    case 'EOPNOTSUPP':
      return make('EKERNEL', perf ? `this machine does not support that perf event (${code}); ebpfprof samples with the software cpu-clock event, which needs no hardware PMU` : `not supported by this kernel (${code}): ${original}`);
    case 'ENOSYS':
      return make('EKERNEL', `the kernel lacks the ${perf ? 'perf_event_open' : 'bpf'} system call (CONFIG_${perf ? 'PERF_EVENTS' : 'BPF_SYSCALL'}=y is needed), or a seccomp filter hides it`);
    case 'EMFILE':
    case 'ENFILE':
      return make('EKERNEL', `too many open files (${code}): ebpfprof opens one perf event per CPU; raise the limit (ulimit -n)`);
    case 'ENOMEM':
      return make('EKERNEL', kernelAtLeast(version, 5, 11) ? `the kernel ran out of memory for BPF maps (ENOMEM): ${original}` : `the kernel ran out of memory for BPF maps (ENOMEM): on Linux ${release} (< 5.11) raise RLIMIT_MEMLOCK (ulimit -l unlimited)`);
    case 'E2BIG':
      return make('EKERNEL', `the kernel rejected the program or map as too big (E2BIG): ${original}`);
    case 'EBUSY':
      return make('EKERNEL', `the kernel resource is busy (EBUSY): ${original}`);
    default:
      return make('EKERNEL', code ? `${original} (${code})` : original);
  }
}

// SPDX-License-Identifier: Apache-2.0
/**
 * Uprobes registered anywhere on the host, to find those on the target's files. A uprobe is
 * registered on a file (inode) and patches the code pages of every process mapping it that its
 * filter lets in, so the question is: is any uprobe registered on a file the target maps?
 *  - BPF programs on uprobe perf events (libbpf, bpftrace, BCC): BPF_TASK_FD_QUERY on every
 *    perf_event fd of every process, as `bpftool perf` does (needs CAP_SYS_ADMIN);
 *  - uprobe_multi BPF links: the fdinfo of bpf_link fds (the path is printed by Linux 6.13+);
 *  - uprobes created through tracefs (`perf probe -x`): /sys/kernel/tracing/uprobe_events.
 * A uprobe that fired in the target leaves an [uprobes] mapping in it: snapshot.ts sees that.
 */
import * as fs from 'node:fs';
import { errorMessage } from '../errors';
import { BPF_FD_TYPE_UPROBE, BPF_FD_TYPE_URETPROBE, loadAddon, type NativeAddon } from '../native/addon';
import { deviceNumber } from '../symbolize/binaries';
import type { MappedFile } from './snapshot';

export interface UprobeRegistration {
  source: 'bpf-perf-event' | 'bpf-link' | 'tracefs';
  /** The probed file as registered ('' when the kernel does not say). */
  path: string;
  offset: number | null;
  retprobe: boolean;
  /** The process holding the fd (null for tracefs events). */
  holderPid: number | null;
  holderComm: string | null;
}

export interface UprobeScan {
  registrations: UprobeRegistration[];
  /** What could not be looked at, and why (e.g. no CAP_SYS_ADMIN for BPF_TASK_FD_QUERY). */
  problems: string[];
}

/** Parses uprobe_events: "p:GROUP/EVENT PATH:0xOFFSET [args]" (r: for return probes). */
export function parseUprobeEvents(text: string): UprobeRegistration[] {
  const out: UprobeRegistration[] = [];
  for (const line of text.split('\n')) {
    const m = /^([pr])(?::\S+)?\s+(\S+?):(0x[0-9a-fA-F]+|\d+)(?:\(\S*\))?(?:\s|$)/.exec(line.trim());
    if (!m) continue;
    out.push({ source: 'tracefs', path: m[2]!, offset: Number(m[3]), retprobe: m[1] === 'r', holderPid: null, holderComm: null });
  }
  return out;
}

/** The uprobe_multi lines of a bpf_link fdinfo: link_type and, on 6.13+, path. */
export function parseLinkFdinfo(text: string): { uprobeMulti: boolean; path: string; retprobe: boolean } {
  const type = /^link_type:\s*(\S+)/m.exec(text)?.[1] ?? '';
  return { uprobeMulti: type === 'uprobe_multi', path: /^path:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? '', retprobe: /^flags:\s*0x0*1\s*$/m.test(text) };
}

function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'latin1').trim();
  } catch {
    return '?';
  }
}

export function scanUprobes(addon?: Pick<NativeAddon, 'taskFdQuery'>): UprobeScan {
  const registrations: UprobeRegistration[] = [];
  const problems: string[] = [];
  let native: Pick<NativeAddon, 'taskFdQuery'> | null = addon ?? null;
  if (!native) {
    try {
      native = loadAddon();
    } catch (e) {
      problems.push(`BPF uprobes not checked: ${errorMessage(e)}`);
    }
  }
  let queryRefused = false;
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target === 'anon_inode:[perf_event]' && native && !queryRefused) {
        try {
          const q = native.taskFdQuery(pid, Number(fd));
          if (q && (q.fdType === BPF_FD_TYPE_UPROBE || q.fdType === BPF_FD_TYPE_URETPROBE)) {
            registrations.push({ source: 'bpf-perf-event', path: q.name, offset: q.probeOffset, retprobe: q.fdType === BPF_FD_TYPE_URETPROBE, holderPid: pid, holderComm: comm(pid) });
          }
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code === 'EPERM' || code === 'EACCES') {
            queryRefused = true;
            problems.push('BPF uprobes not checked: BPF_TASK_FD_QUERY needs CAP_SYS_ADMIN (run verify as root)');
          }
          // ESRCH and friends: the process or fd went away meanwhile
        }
      } else if (target === 'anon_inode:bpf_link') {
        let info: string;
        try {
          info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1');
        } catch {
          continue;
        }
        const l = parseLinkFdinfo(info);
        if (l.uprobeMulti) registrations.push({ source: 'bpf-link', path: l.path, offset: null, retprobe: l.retprobe, holderPid: pid, holderComm: comm(pid) });
      }
    }
  }
  for (const file of ['/sys/kernel/tracing/uprobe_events', '/sys/kernel/debug/tracing/uprobe_events']) {
    try {
      registrations.push(...parseUprobeEvents(fs.readFileSync(file, 'latin1')));
      break;
    } catch {
      // not mounted here: try the other location
    }
  }
  return { registrations, problems };
}

/**
 * The registrations on files the target maps: same path as the target sees it, or the same inode
 * (paths differ across mount namespaces), and uprobe_multi links whose path the kernel hides.
 */
export function uprobesOnTarget(scan: UprobeScan, files: readonly MappedFile[], statFn: (p: string) => { dev: number; ino: number } | null = safeStat): UprobeRegistration[] {
  const paths = new Set(files.map((f) => f.path));
  const ids = new Set(files.map((f) => `${deviceOf(f.dev)}:${f.inode}`));
  return scan.registrations.filter((r) => {
    if (r.path === '') return r.source === 'bpf-link';
    if (paths.has(r.path)) return true;
    const st = statFn(r.path);
    return st !== null && ids.has(`${st.dev}:${st.ino}`);
  });
}

/** st_dev of a "fe:01" device as /proc/PID/maps prints it. */
export function deviceOf(dev: string): number {
  const [major, minor] = dev.split(':').map((x) => parseInt(x, 16));
  return deviceNumber(major ?? 0, minor ?? 0);
}

function safeStat(p: string): { dev: number; ino: number } | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

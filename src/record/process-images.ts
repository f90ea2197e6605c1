// SPDX-License-Identifier: Apache-2.0
/**
 * Which image (program) a sample ran, so its user frames are symbolized with the right mappings.
 *
 * Every sample carries its task's exec id (the kernel's self_exec_id, which grows at each execve and
 * is inherited by fork). The recorder snapshots a process's mappings when it execs; a sample with an
 * older exec id than that snapshot ran an earlier image: for a child between fork and exec, that is
 * its parent's image, which the parent's snapshot describes. Anything else is an image we never saw.
 */

/** Upper bound of remembered forks and execs; the oldest are forgotten beyond it. */
const MAX_REMEMBERED = 65536;
/** Fork chains followed when looking for an image (a child of a child of ... that has not exec'd). */
const MAX_FORK_DEPTH = 16;

export class ProcessImages {
  /** pid -> exec id of the image its current snapshot describes (set when it exec'd). */
  private readonly current = new Map<number, number>();
  /** child pid -> the parent and the image the child inherited at fork. */
  private readonly forks = new Map<number, { ppid: number; execId: number }>();

  exec(pid: number, execId: number): void {
    bounded(this.current, pid, execId);
  }

  fork(pid: number, ppid: number, execId: number): void {
    bounded(this.forks, pid, { ppid, execId });
  }

  /** The process exited: a later process with its pid starts with nothing remembered. */
  forget(pid: number): void {
    this.current.delete(pid);
    this.forks.delete(pid);
  }

  /**
   * The pid whose mappings describe `pid`'s image `execId`: itself unless it exec'd since, its parent
   * (or an ancestor) for the time between fork and exec, or null for an image never snapshotted.
   */
  symbolsPid(pid: number, execId: number): number | null {
    let p = pid;
    for (let depth = 0; depth < MAX_FORK_DEPTH; depth++) {
      const cur = this.current.get(p);
      if (cur === undefined || execId >= cur) return p;
      const f = this.forks.get(p);
      if (!f || f.execId !== execId) return null;
      p = f.ppid;
    }
    return null;
  }
}

function bounded<V>(map: Map<number, V>, key: number, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_REMEMBERED) map.delete(map.keys().next().value as number);
}

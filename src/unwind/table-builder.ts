// SPDX-License-Identifier: Apache-2.0
/**
 * Builds unwind tables one at a time, each in its own turn of the event loop: a large binary's
 * table (node: ~100 ms of parsing) delays the profiler's other work by one build at most, never by
 * a whole start-up's worth of binaries. (A worker thread would take the builds off the event loop
 * entirely, but costs ~30 MiB of resident memory at its peak: more than the builds it saves.)
 * When the queue empties, the transient buffers of the builds are handed back to the kernel.
 */
import { loadAddon } from '../native/addon';
import { buildUnwindTable, CfiInputs, LoadedUnwindTable, UnwindTableFailure } from './elf-unwind';

export type BuildResult = { result: LoadedUnwindTable | UnwindTableFailure; ms: number };

export class TableBuilder {
  private readonly queue: Array<{ inputs: CfiInputs; resolve: (r: BuildResult) => void }> = [];
  private scheduled = false;
  private builtSinceTrim = 0;

  build(inputs: CfiInputs): Promise<BuildResult> {
    return new Promise((resolve) => {
      this.queue.push({ inputs, resolve });
      this.schedule();
    });
  }

  /** Builds what is still queued now (the sampler is closing). */
  close(): void {
    while (this.queue.length > 0) this.runOne();
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.runOne();
      if (this.queue.length > 0) this.schedule();
      else if (this.builtSinceTrim > 0) {
        this.builtSinceTrim = 0;
        loadAddon().releaseFreeMemory();
      }
    });
  }

  private runOne(): void {
    const next = this.queue.shift();
    if (next === undefined) return;
    const t0 = performance.now();
    const result = buildUnwindTable(next.inputs);
    this.builtSinceTrim++;
    next.resolve({ result, ms: performance.now() - t0 });
  }
}

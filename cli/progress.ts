// SPDX-License-Identifier: Apache-2.0
/** Progress lines on stderr while recording: rewritten in place on a terminal, every 5 s otherwise. */
import type { RecordProgress } from '../src/record/recorder';

export class ProgressLine {
  private lastPrinted = 0;
  private readonly tty: boolean;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {
    this.tty = out.isTTY === true;
  }

  update(p: RecordProgress): void {
    const line = `ebpfprof: ${(p.elapsedMs / 1000).toFixed(1)}s  samples ${p.samples}  lost ${p.lostSamples}  processes ${p.processes}`;
    if (this.tty) {
      this.out.write(`\r\x1b[K${line}`);
    } else if (p.elapsedMs - this.lastPrinted >= 5000 || this.lastPrinted === 0) {
      this.out.write(`${line}\n`);
      this.lastPrinted = p.elapsedMs;
    }
  }

  /** Ends an in-place line so that what follows starts on its own line. */
  finish(): void {
    if (this.tty) this.out.write('\n');
  }
}

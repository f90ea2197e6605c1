// SPDX-License-Identifier: Apache-2.0
/**
 * Notices when the configuration file changed: inotify on its directory (a Kubernetes ConfigMap
 * volume replaces the file by swapping a symlink, which a watch on the file itself misses), plus
 * check() that the agent also calls at every export window and on SIGHUP. A change is reported
 * once per distinct content, never for a rewrite with the same bytes.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export class ConfigFileWatcher {
  private lastHash: string | null;
  private watcher: fs.FSWatcher | null = null;
  private debounce: NodeJS.Timeout | null = null;

  constructor(
    readonly file: string,
    private readonly onChange: () => void,
  ) {
    this.lastHash = this.hash();
    try {
      this.watcher = fs.watch(path.dirname(path.resolve(file)), { persistent: false }, () => this.schedule());
      this.watcher.on('error', () => {
        // The directory went away (volume remount): check() at each window still notices changes.
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      this.watcher = null;
    }
  }

  private hash(): string | null {
    try {
      return createHash('sha256').update(fs.readFileSync(this.file)).digest('hex');
    } catch {
      return null;
    }
  }

  private schedule(): void {
    if (this.debounce) clearTimeout(this.debounce);
    // Editors and ConfigMap updates write in several steps: look once they are done.
    this.debounce = setTimeout(() => {
      this.debounce = null;
      this.check();
    }, 200);
    this.debounce.unref();
  }

  /** Calls onChange if the content differs from the last seen (a missing file is no change). */
  check(): boolean {
    const h = this.hash();
    if (h === null || h === this.lastHash) return false;
    this.lastHash = h;
    this.onChange();
    return true;
  }

  /** After a reload triggered elsewhere (SIGHUP): remember the content as seen. */
  markSeen(): void {
    this.lastHash = this.hash();
  }

  close(): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = null;
  }
}

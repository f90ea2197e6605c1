// SPDX-License-Identifier: Apache-2.0
/** --open: start a browser on a written page, detached, and say so; a missing browser is a warning. */
import { spawn } from 'node:child_process';
import { findBrowserOpener } from '../viewer/page';

/** Returns true when a browser was started. */
export function openInBrowser(page: string): boolean {
  const opener = findBrowserOpener(page);
  if (!opener) {
    process.stderr.write(`ebpfprof: no browser found for --open (set $BROWSER, or install xdg-utils); open ${page} yourself\n`);
    return false;
  }
  try {
    const child = spawn(opener.command, opener.args, { detached: true, stdio: 'ignore' });
    child.on('error', (e) => process.stderr.write(`ebpfprof: could not start ${opener.command}: ${e.message}; open ${page} yourself\n`));
    child.unref();
    process.stderr.write(`ebpfprof: opening ${page} with ${opener.source}\n`);
    return true;
  } catch (e) {
    process.stderr.write(`ebpfprof: could not start ${opener.command}: ${(e as Error).message}; open ${page} yourself\n`);
    return false;
  }
}

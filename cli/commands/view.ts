// SPDX-License-Identifier: Apache-2.0
/** ebpfprof view FILE: any pprof, folded or speedscope file as a self-contained flame-graph page. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { EbpfprofError } from '../../src/errors';
import { assertWritable } from '../../src/output/profile-file';

const PROFILE_EXTENSIONS = ['.pb.gz', '.pprof.gz', '.pprof', '.pb', '.speedscope.json', '.json', '.folded', '.collapsed', '.txt'];

/** out/host.pb.gz -> out/host.html */
export function defaultPagePath(input: string): string {
  const base = path.basename(input);
  const ext = PROFILE_EXTENSIONS.find((e) => base.endsWith(e));
  const stem = ext ? base.slice(0, -ext.length) : base;
  return path.join(path.dirname(input), `${stem || 'profile'}.html`);
}

export function readProfileFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new EbpfprofError('EINPUT', `cannot read ${file}: ${why}`, { cause: e });
  }
}

/** Writes the viewer page for a profile file and returns its absolute path. */
export async function viewFile(file: string, output?: string, title?: string): Promise<string> {
  // Loaded on use: `record` and `doctor` need neither the decoders nor speedscope.
  const { decodeProfile } = await import('../../src/decode/index.js');
  const { writeViewerPage } = await import('../../viewer/page.js');
  const profile = decodeProfile(readProfileFile(file), path.basename(file));
  const out = output ?? defaultPagePath(file);
  assertWritable(out);
  return writeViewerPage(profile, out, title ?? path.basename(file));
}

export function registerView(program: Command): void {
  program
    .command('view')
    .description('write an offline flame-graph page (speedscope) for a pprof, folded or speedscope file')
    .argument('<file>', 'profile to show')
    .option('-o, --output <page>', 'where to write the page (default: next to FILE, .html)')
    .option('--title <text>', 'page title (default: the file name)')
    .option('--open', 'open the page in a browser')
    .action(async (file: string, opts: { output?: string; title?: string; open?: boolean }) => {
      const page = await viewFile(file, opts.output, opts.title);
      process.stdout.write(`${page}\n`);
      if (opts.open) (await import('../open-browser.js')).openInBrowser(page);
    });
}

// SPDX-License-Identifier: Apache-2.0
/** Writing a profile to a file in one of the output formats, and checking up front that it can be. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { liveProcessResources } from '../agent/process-resources';
import { encodeFolded } from '../encode/folded';
import { encodeOtlpProfiles } from '../encode/otlp-profiles';
import { encodePprof } from '../encode/pprof';
import { encodeSpeedscope } from '../encode/speedscope';
import { EbpfprofError, errorMessage } from '../errors';
import { readOwnIdentity } from '../k8s/downward-api';
import type { Profile } from '../profile/model';

export const OUTPUT_FORMATS = ['pprof', 'folded', 'speedscope', 'otlp'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export const DEFAULT_OUTPUT: Record<OutputFormat, string> = {
  pprof: 'ebpfprof.pb.gz',
  folded: 'ebpfprof.folded',
  speedscope: 'ebpfprof.speedscope.json',
  otlp: 'ebpfprof.otlp.pb.gz',
};

export function encodeProfile(profile: Profile, format: OutputFormat): Buffer {
  switch (format) {
    case 'pprof':
      return encodePprof(profile);
    case 'folded':
      return Buffer.from(encodeFolded(profile), 'utf8');
    case 'speedscope':
      return Buffer.from(encodeSpeedscope(profile), 'utf8');
    case 'otlp':
      // OTLP Profiles (gzip'ed ProfilesData), resource attributes read from /proc now.
      return encodeOtlpProfiles(profile, { resourceOf: liveProcessResources(os.hostname(), readOwnIdentity().nodeName) });
  }
}

/**
 * Fails now, before minutes of recording, if `file` could not be written later: its directory must
 * exist and be writable, and an existing file must be a writable regular file.
 */
export function assertWritable(file: string): void {
  const abs = path.resolve(file);
  const dir = path.dirname(abs);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(abs);
  } catch {
    st = undefined;
  }
  try {
    if (st) {
      if (!st.isFile()) throw new Error('it exists and is not a regular file');
      fs.accessSync(abs, fs.constants.W_OK);
    } else {
      if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
      fs.accessSync(dir, fs.constants.W_OK);
    }
  } catch (e) {
    throw new EbpfprofError('EOUTPUT', `cannot write ${abs}: ${plainReason(e)}; choose another path with -o`, { cause: e });
  }
}

/**
 * Writes atomically (a temporary file next to the target, then rename) so that a failed write never
 * leaves half a file behind. Returns the absolute path; EOUTPUT names `what` and the reason.
 */
export function writeFileAtomic(file: string, data: Buffer | string, what: string, options: { createParents?: boolean } = {}): string {
  const abs = path.resolve(file);
  const tmp = `${abs}.tmp-${process.pid}`;
  try {
    if (options.createParents) fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, abs);
  } catch (e) {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // nothing to clean
    }
    throw new EbpfprofError('EOUTPUT', `cannot write ${what} ${abs}: ${plainReason(e)}`, { cause: e });
  }
  return abs;
}

export function writeOutputFile(file: string, bytes: Buffer): string {
  return writeFileAtomic(file, bytes, 'the profile');
}

function plainReason(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT') return 'its directory does not exist';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EROFS') return 'read-only file system';
  if (code === 'ENOSPC') return 'no space left on the device';
  if (code === 'EISDIR') return 'it is a directory';
  return errorMessage(e);
}

// SPDX-License-Identifier: Apache-2.0
/**
 * Reads any profile file the viewer accepts, recognizing the format from the content (the file name
 * only appears in messages): gzip is unpacked first (pprof is usually gzip'ed, folded text sometimes
 * is), then JSON → speedscope, text → folded stacks, binary → raw profile.proto.
 */
import { EbpfprofError } from '../errors';
import type { Profile } from '../profile/model';
import { decodeFolded, type FoldedDecodeOptions } from './folded';
import { decodePprof, gunzipIfNeeded } from './pprof';
import { decodeSpeedscopeDocument, isSpeedscopeJson } from './speedscope';

export type ProfileFormat = 'pprof' | 'speedscope' | 'folded';

export interface DecodeOptions {
  /** How to read folded stacks (see decode/folded.ts). */
  folded?: FoldedDecodeOptions;
}

/**
 * Whether bytes read as text: no NUL and almost no other control characters. profile.proto always has
 * some (field tags 0x08/0x10, small lengths), folded stacks and JSON have none but tab/CR/LF.
 */
function looksLikeText(b: Buffer): boolean {
  const n = Math.min(b.length, 64 * 1024);
  let control = 0;
  for (let i = 0; i < n; i++) {
    const c = b[i]!;
    if (c === 0) return false;
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d && c !== 0x0c) control++;
  }
  return control === 0;
}

function firstNonSpace(b: Buffer): number {
  let i = 0;
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) i = 3; // UTF-8 BOM
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x09 || b[i] === 0x0a || b[i] === 0x0d)) i++;
  return i < b.length ? b[i]! : -1;
}

/** The format decodeProfile will assume for these (already decompressed) bytes. */
export function detectFormat(data: Buffer): ProfileFormat {
  if (!looksLikeText(data)) return 'pprof';
  return firstNonSpace(data) === 0x7b /* { */ ? 'speedscope' : 'folded';
}

/** Decodes a pprof, speedscope or folded profile; EbpfprofError('EINPUT') when it is none of them. */
export function decodeProfile(bytes: Buffer, fileName?: string, options: DecodeOptions = {}): Profile {
  const name = fileName ?? 'input';
  if (bytes.length === 0) throw new EbpfprofError('EINPUT', `cannot read ${name}: the file is empty`);
  const { data, compressed } = gunzipIfNeeded(bytes, `${name} (gzip-compressed, assumed pprof)`);
  if (compressed && data.length === 0) throw new EbpfprofError('EINPUT', `cannot read ${name}: it decompresses to nothing`);

  switch (detectFormat(data)) {
    case 'pprof':
      return decodePprof(data, fileName);
    case 'speedscope': {
      let doc: unknown;
      try {
        doc = JSON.parse(data.toString('utf8').replace(/^\uFEFF/, ''));
      } catch (e) {
        throw new EbpfprofError(
          'EINPUT',
          `cannot read ${name}: it starts with "{" so it was read as speedscope JSON, but it is not valid JSON: ${e instanceof Error ? e.message : String(e)}`,
          { cause: e },
        );
      }
      if (!isSpeedscopeJson(doc)) {
        throw new EbpfprofError(
          'EINPUT',
          `cannot read ${name}: it is JSON but not a speedscope file ($schema is not "https://www.speedscope.app/file-format-schema.json"); supported formats are pprof, speedscope JSON and folded stacks`,
        );
      }
      return decodeSpeedscopeDocument(doc, fileName);
    }
    case 'folded':
      return decodeFolded(data, fileName, options.folded);
  }
}

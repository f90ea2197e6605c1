// SPDX-License-Identifier: Apache-2.0
// Reference tools the tests compare against, found where this machine and CI install them.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The Go toolchain (for `go tool pprof`): PATH first, then the official install location. */
export function goBinary(): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/local/go/bin', '/usr/lib/go/bin']) {
    const p = path.join(dir || '.', 'go');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('go is required for `go tool pprof` (the reference pprof consumer): install golang-go');
}

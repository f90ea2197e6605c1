// SPDX-License-Identifier: Apache-2.0
// Real servers as verify targets: nginx in the foreground (no master process, no daemon) with its
// whole configuration and state in a test directory, listening on loopback.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function nginxBinary(): string {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx']) if (fs.existsSync(p)) return p;
  throw new Error('nginx is required for the verify tests (apt-get install nginx)');
}

/** The argv of a foreground nginx serving "ok" on 127.0.0.1:port, everything under `dir`. */
export function nginxCommand(dir: string, port: number): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  const p = (name: string): string => path.join(dir, name);
  fs.writeFileSync(
    conf,
    [
      'daemon off;',
      'master_process off;',
      'worker_processes 1;',
      `error_log ${p('error.log')};`,
      `pid ${p('nginx.pid')};`,
      'events { worker_connections 256; }',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${p(`${t}-temp`)};`),
      `  server { listen 127.0.0.1:${port}; location / { return 200 "ok\\n"; } }`,
      '}',
      '',
    ].join('\n'),
  );
  return [nginxBinary(), '-c', conf, '-p', dir];
}

/** Compiles a C file of test/fixtures/verify into `out` (a shared library with `shared`). */
export function compileFixture(src: string, out: string, shared = false): string {
  execFileSync('gcc', [...(shared ? ['-shared', '-fPIC'] : []), '-O1', '-o', out, src, '-lpthread'], { stdio: 'inherit' });
  return out;
}

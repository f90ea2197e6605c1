// SPDX-License-Identifier: Apache-2.0
/**
 * The offline flame-graph viewer: one self-contained HTML page holding speedscope's released app
 * (JS and CSS inlined, its font as a data: URL) and the profile (our speedscope encoding, base64).
 * It opens from disk (file://) with no network. How the profile gets into speedscope is described in
 * viewer/README.md; in short, a bootstrap script before the bundle sets `#localProfilePath=...`, and
 * hands the embedded bytes to the `window.speedscope.loadFileFromBase64` speedscope then defines.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { EbpfprofError, errorMessage } from '../src/errors';
import { writeFileAtomic } from '../src/output/profile-file';
import { encodeSpeedscope, ebpfprofVersion } from '../src/encode/speedscope';
import type { Profile } from '../src/profile/model';

export interface ViewerPageOptions {
  /** Shown in the page title and as the profile name in speedscope. */
  title: string;
}

/** speedscope's release files, prepared for inlining. */
export interface SpeedscopeAssets {
  version: string;
  /** The bundle with its source-map comment removed. */
  js: string;
  /** The stylesheet with fonts as data: URLs and its source-map comment removed. */
  css: string;
  /** License texts that must travel with the copies (speedscope MIT, Source Code Pro OFL). */
  licenses: string[];
}

/** The hash value of localProfilePath; speedscope turns it into file:///<this>, which we intercept. */
export const EMBEDDED_PROFILE_MARKER = 'ebpfprof-embedded-profile';

const FONT_TYPES: Readonly<Record<string, string>> = {
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.ttf': 'font/ttf',
  '.otf': 'font/otf',
};

let cachedAssets: SpeedscopeAssets | undefined;

function assetError(dir: string, what: string, cause?: unknown): EbpfprofError {
  return new EbpfprofError(
    'EOUTPUT',
    `cannot build the viewer page: ${what} in speedscope's release (${dir}); the installed speedscope is missing or changed — reinstall dependencies (npm ci) or check viewer/README.md for the supported version`,
    cause === undefined ? undefined : { cause },
  );
}

/** Reads speedscope's release (located through Node resolution) once and caches it. */
export function loadSpeedscopeAssets(): SpeedscopeAssets {
  if (cachedAssets) return cachedAssets;
  let pkgPath: string;
  try {
    pkgPath = require.resolve('speedscope/package.json');
  } catch (e) {
    throw new EbpfprofError('EOUTPUT', `cannot build the viewer page: the speedscope package is not installed (${errorMessage(e)}); run npm ci`, { cause: e });
  }
  const root = path.dirname(pkgPath);
  const dir = path.join(root, 'dist', 'release');
  const read = (name: string, what: string): string => {
    // Names come from index.html: accept only plain file names inside the release directory.
    if (path.basename(name) !== name || name === '' || name.startsWith('.')) throw assetError(dir, `unexpected ${what} reference ${JSON.stringify(name)}`);
    try {
      return fs.readFileSync(path.join(dir, name), 'utf8');
    } catch (e) {
      throw assetError(dir, `cannot read ${what} ${name}`, e);
    }
  };

  let version: unknown;
  try {
    version = (JSON.parse(fs.readFileSync(pkgPath, 'utf8')) as { version?: unknown }).version;
  } catch (e) {
    throw assetError(dir, 'cannot read package.json', e);
  }
  const index = read('index.html', 'index.html');
  // The bundle and stylesheet names carry content hashes that change with every release.
  const cssName = /<link\b[^>]*\brel="stylesheet"[^>]*\bhref="([^"]+)"/.exec(index)?.[1] ?? /<link\b[^>]*\bhref="([^"]+\.css)"/.exec(index)?.[1];
  const jsName = /<script\b[^>]*\bsrc="([^"]+\.js)"/.exec(index)?.[1];
  if (!cssName || !jsName) throw assetError(dir, 'index.html does not reference a stylesheet and a script');

  const js = read(jsName, 'script').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
  // These two strings are how speedscope loads a local profile; without them the page cannot work.
  for (const needle of ['localProfilePath', 'loadFileFromBase64']) {
    if (!js.includes(needle)) throw assetError(dir, `the bundle ${jsName} no longer contains "${needle}" (the hook the viewer relies on)`);
  }

  let css = read(cssName, 'stylesheet').replace(/\/\*# sourceMappingURL=[^*]*\*\/\s*/g, '');
  css = css.replace(/url\((["']?)([^"')]+)\1\)/g, (whole, _q: string, ref: string) => {
    if (/^(data|https?):/i.test(ref)) return whole;
    const name = ref.replace(/^\.\//, '');
    const type = FONT_TYPES[path.extname(name).toLowerCase()];
    if (!type || path.basename(name) !== name) return whole;
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(path.join(dir, name));
    } catch (e) {
      throw assetError(dir, `cannot read font ${name}`, e);
    }
    return `url("data:${type};base64,${bytes.toString('base64')}")`;
  });

  const licenses: string[] = [];
  for (const [file, label] of [
    [path.join(root, 'LICENSE'), `speedscope ${String(version)} (https://github.com/jlfwong/speedscope)`],
    [path.join(dir, 'source-code-pro.LICENSE.md'), 'Source Code Pro font (embedded in the stylesheet)'],
  ] as const) {
    try {
      licenses.push(`${label}\n\n${fs.readFileSync(file, 'utf8').trim()}`);
    } catch {
      licenses.push(`${label}: license file not found in the installed package`);
    }
  }

  cachedAssets = { version: typeof version === 'string' ? version : 'unknown', js, css, licenses };
  return cachedAssets;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that is also safe inside a <script> element (no "</script", "<!--" or line separators). */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** Text safe inside an HTML comment. */
function commentText(s: string): string {
  // Runs of dashes (the OFL's rules) would end or break the comment; '=' reads the same.
  return s.replace(/-{2,}/g, (d) => '='.repeat(d.length)).replace(/-$/, '=');
}

/** A classic script element for code that may contain sequences the HTML parser would act on. */
function scriptElement(code: string): string {
  if (!/<\/script|<!--/i.test(code)) return `<script>${code}</script>`;
  // Cannot be inlined verbatim: a data: URL keeps it byte-exact and still loads offline, in order.
  return `<script src="data:text/javascript;base64,${Buffer.from(code, 'utf8').toString('base64')}"></script>`;
}

function bootstrap(fileName: string, base64: string, speedscopeVersion: string): string {
  // ES5 on purpose: it runs before anything else and must not be the reason a page fails.
  return `(function () {
  'use strict';
  var NAME = ${scriptJson(fileName)};
  var DATA = ${scriptJson(base64)};
  var MARKER = ${scriptJson(EMBEDDED_PROFILE_MARKER)};
  // speedscope parses the hash once, when its bundle starts. localProfilePath makes it define
  // window.speedscope.loadFileFromBase64 and then load file:///<path> as a script meant to call it.
  // profileURL would take precedence, so it is dropped; other parameters (view=..., title=...) stay.
  var kept = [];
  var hash = window.location.hash.replace(/^#/, '');
  if (hash) {
    hash.split('&').forEach(function (kv) {
      var key = kv.split('=')[0];
      if (kv && key !== 'localProfilePath' && key !== 'profileURL') kept.push(kv);
    });
  }
  var wanted = '#' + ['localProfilePath=' + MARKER].concat(kept).join('&');
  if (window.location.hash !== wanted) {
    try { window.history.replaceState(window.history.state, '', wanted); }
    catch (e) { window.location.hash = wanted; }
  }
  var api;
  var delivered = false;
  function deliver() {
    if (delivered || !api || typeof api.loadFileFromBase64 !== 'function') return;
    delivered = true;
    api.loadFileFromBase64(NAME, DATA);
  }
  // Catch the moment speedscope publishes its loader, whatever it does with the script afterwards.
  Object.defineProperty(window, 'speedscope', {
    configurable: true,
    enumerable: true,
    get: function () { return api; },
    set: function (v) { api = v; setTimeout(deliver, 0); }
  });
  // Swallow the one script element pointing at file:///<MARKER>, so the page makes no request.
  var head = document.head;
  head.appendChild = function (node) {
    if (node && node.nodeName === 'SCRIPT' && String(node.src).indexOf(MARKER) !== -1) {
      delete head.appendChild;
      setTimeout(deliver, 0);
      return node;
    }
    return Node.prototype.appendChild.call(this, node);
  };
  window.addEventListener('load', function () {
    setTimeout(function () {
      if (delivered) return;
      var box = document.createElement('div');
      box.setAttribute('style', 'position:fixed;top:0;left:0;right:0;z-index:10000;padding:12px;background:#b00020;color:#fff;font:14px sans-serif');
      box.textContent = 'ebpfprof: the embedded speedscope ' + ${scriptJson(speedscopeVersion)} +
        ' did not accept the embedded profile (see viewer/README.md). Convert the profile with --format speedscope and open it at speedscope instead.';
      document.body.appendChild(box);
    }, 1000);
  });
})();`;
}

/** One self-contained HTML page showing the profile in speedscope, offline. */
export function renderViewerPage(profile: Profile, options: ViewerPageOptions): string {
  const assets = loadSpeedscopeAssets();
  const title = options.title;
  const json = encodeSpeedscope(profile, { name: title });
  const base64 = Buffer.from(json, 'utf8').toString('base64');
  const version = ebpfprofVersion();
  return `<!DOCTYPE html>
<!-- SPDX-License-Identifier: Apache-2.0 -->
<!-- Generated by ebpfprof ${commentText(version)}: an offline flame graph made with speedscope ${commentText(assets.version)}.
${assets.licenses.map(commentText).join('\n\n')}
-->
<html>
<head>
<meta charset="UTF-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta name="generator" content="ebpfprof ${escapeHtml(version)}, speedscope ${escapeHtml(assets.version)}">
<title>${escapeHtml(title)} - ebpfprof</title>
<style>${assets.css.replace(/<\/style/gi, '<\\/style')}</style>
${scriptElement(bootstrap('profile.speedscope.json', base64, assets.version))}
</head>
<body>
${scriptElement(assets.js)}
</body>
</html>
`;
}

/** Writes the viewer page (creating parent directories) and returns its absolute path. */
export function writeViewerPage(profile: Profile, outPath: string, title: string): string {
  return writeFileAtomic(outPath, renderViewerPage(profile, { title }), 'the viewer page', { createParents: true });
}

/** A command that opens a page in a browser: run `command` with `args` (the page URL is included). */
export interface BrowserOpener {
  command: string;
  args: string[];
  /** Where it came from: '$BROWSER', 'xdg-open', 'sensible-browser' or a browser binary's name. */
  source: string;
}

function findExecutable(name: string, env: NodeJS.ProcessEnv): string | null {
  const candidates = name.includes('/') ? [name] : (env['PATH'] ?? '').split(':').filter(Boolean).map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      const st = fs.statSync(c);
      if (st.isFile()) {
        fs.accessSync(c, fs.constants.X_OK);
        return c;
      }
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Finds how to open `page` (a path or URL) in a browser; null when nothing is available, for the CLI
 * to report. Order: $BROWSER first (an explicit user choice; entries separated by ':' and `%s`
 * standing for the URL, as sensible-browser reads it), then xdg-open and sensible-browser (desktop
 * defaults), then a Chromium binary. Chromium refuses to run as root without --no-sandbox; since the
 * page is a local file we wrote, that flag is added for root.
 */
export function findBrowserOpener(page: string, env: NodeJS.ProcessEnv = process.env): BrowserOpener | null {
  const url = /^[a-z][a-z0-9+.-]*:/i.test(page) ? page : pathToFileURL(path.resolve(page)).href;
  for (const entry of (env['BROWSER'] ?? '').split(':')) {
    const words = entry.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) continue;
    const exe = findExecutable(words[0]!, env);
    if (!exe) continue;
    const rest = words.slice(1);
    const hasPlaceholder = rest.some((w) => w.includes('%s'));
    const args = hasPlaceholder ? rest.map((w) => w.replace(/%s/g, url)) : [...rest, url];
    return { command: exe, args, source: '$BROWSER' };
  }
  for (const name of ['xdg-open', 'sensible-browser']) {
    const exe = findExecutable(name, env);
    if (exe) return { command: exe, args: [url], source: name };
  }
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    const exe = findExecutable(name, env);
    if (exe) return { command: exe, args: isRoot ? ['--no-sandbox', url] : [url], source: name };
  }
  return null;
}

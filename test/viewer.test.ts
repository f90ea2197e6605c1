// SPDX-License-Identifier: Apache-2.0
// The offline viewer page, opened from file:// in headless Chromium with no network: speedscope
// loads the embedded profile and shows the hot function. speedscope draws flame graphs on a canvas,
// so the assertions go through its sandwich view, a DOM table of functions.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BrowserContext } from 'playwright-core';
import { EbpfprofError } from '../src/errors';
import { findBrowserOpener, loadSpeedscopeAssets, renderViewerPage, writeViewerPage } from '../viewer/page';
import { ProfileBuilder, type Profile } from '../src/profile/model';
import { PERIOD_NS, basicProfile, richProfile } from './fixtures/profiles/sample-profiles';
import { bodyText, canvasCount, chromiumMissing, launchOffline, sandwichRow, waitForText, watch } from './helpers/chromium';
const HOT = 'hot_function_a';
const TITLE = 'ebpfprof test <&> "run"';

t.test('the page is one self-contained document', async (t) => {
  const html = renderViewerPage(basicProfile(HOT), { title: TITLE });
  t.match(html, /^<!DOCTYPE html>\n<!-- SPDX-License-Identifier: Apache-2\.0 -->/);
  t.match(html, /<title>ebpfprof test &#60;&#38;&#62; &#34;run&#34; - ebpfprof<\/title>/, 'title escaped');
  t.notMatch(html, /<link\b/i, 'no external stylesheets or icons');
  const scripts = html.match(/<script\b[^>]*>/gi) ?? [];
  t.equal(scripts.length, 2, 'bootstrap + speedscope bundle');
  for (const s of scripts) t.notMatch(s, /\bsrc="(?!data:)/, `inline or data: script: ${s.slice(0, 60)}`);
  t.notMatch(html, /url\(["']?(?!data:)[^"')]+\.(woff2?|ttf|otf|png|ico)/i, 'fonts inlined as data: URLs');
  t.notMatch(html, /data:application\/wasm|data:image\//i, 'wasm and favicons left out (only the JFR importer would fetch the wasm)');
  t.match(html, /sourceMappingURL/.test(loadSpeedscopeAssets().js) ? /^(?![\s\S]*sourceMappingURL)/ : /./, 'no source-map references');
  t.match(html, /speedscope 1\.\d+\.\d+/, 'speedscope version recorded');
  t.match(html, /MIT License[\s\S]*Jamie Wong/, "speedscope's license travels with it");
  t.match(html, /SIL Open Font License/, "the font's license travels with it");
  t.notMatch(html.replace(/<!--[\s\S]*?-->/g, ''), /<!--/, 'comments are well-formed');
});

t.test('writeViewerPage: absolute path back, EOUTPUT on failure', async (t) => {
  const dir = t.testdir({});
  const rel = path.relative(process.cwd(), path.join(dir, 'sub', 'page.html'));
  const out = writeViewerPage(basicProfile(), rel, 'x');
  t.ok(path.isAbsolute(out));
  t.equal(out, path.join(dir, 'sub', 'page.html'));
  t.ok(fs.readFileSync(out, 'utf8').startsWith('<!DOCTYPE html>'));
  t.same(fs.readdirSync(path.join(dir, 'sub')), ['page.html'], 'no temporary file left behind');
  const blocker = path.join(dir, 'file');
  fs.writeFileSync(blocker, '');
  let caught: unknown;
  try {
    writeViewerPage(basicProfile(), path.join(blocker, 'page.html'), 'x');
  } catch (e) {
    caught = e;
  }
  t.ok(caught instanceof EbpfprofError && caught.code === 'EOUTPUT', 'EbpfprofError EOUTPUT');
  t.match(String(caught), /cannot write the viewer page .*page\.html: /);
});

t.test('findBrowserOpener', async (t) => {
  const dir = t.testdir({});
  const fake = (name: string): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, '#!/bin/sh\n', { mode: 0o755 });
    return p;
  };
  const page = path.join(dir, 'page.html');
  const url = pathToFileURL(page).href;
  t.equal(findBrowserOpener(page, { PATH: '' }), null, 'nothing found → null');
  t.equal(findBrowserOpener(page, { PATH: dir, BROWSER: 'not-there' }), null, 'a $BROWSER that does not exist is skipped');
  const chromiumBin = fake('chromium');
  const isRoot = process.getuid?.() === 0;
  t.same(findBrowserOpener(page, { PATH: dir }), { command: chromiumBin, args: isRoot ? ['--no-sandbox', url] : [url], source: 'chromium' });
  const sensible = fake('sensible-browser');
  t.same(findBrowserOpener(page, { PATH: dir }), { command: sensible, args: [url], source: 'sensible-browser' });
  const xdg = fake('xdg-open');
  t.same(findBrowserOpener(page, { PATH: dir }), { command: xdg, args: [url], source: 'xdg-open' }, 'xdg-open before sensible-browser');
  const mine = fake('mybrowser');
  t.same(findBrowserOpener(page, { PATH: dir, BROWSER: 'nope:mybrowser --new-window %s' }), { command: mine, args: ['--new-window', url], source: '$BROWSER' }, '$BROWSER wins, %s replaced');
  t.same(findBrowserOpener('file:///x/y.html', { PATH: dir, BROWSER: mine }), { command: mine, args: ['file:///x/y.html'], source: '$BROWSER' }, 'URL appended, absolute command');
});

/**
 * speedscope shows one process at a time: pid 100 "app" has HOT ×75 (over two threads) and hot_b ×25,
 * a lighter pid 200 "other" has cold ×10.
 */
function viewerProfile(): Profile {
  const b = new ProfileBuilder({ startTimeMs: 0, durationNs: 1e9, frequencyHz: 99, periodNs: PERIOD_NS, comments: [] });
  const app = b.mapping({ start: 0x400000n, limit: 0x500000n, fileOffset: 0n, path: '/usr/bin/app', buildId: '' });
  const fn = (name: string, address: bigint): number => b.frame({ kind: 'native', name, systemName: '', mapping: app, address, symbolized: true });
  const main = fn('main', 0x401300n);
  const work = fn('work', 0x401200n);
  const row = (stack: number[], pid: number, tid: number, processName: string, count: number): void =>
    b.addSample({ stack: b.stack(stack), pid, tid, processName, threadName: processName, count, cpuNs: count * PERIOD_NS });
  row([fn(HOT, 0x401100n), work, main], 100, 100, 'app', 50);
  row([fn(HOT, 0x401100n), work, main], 100, 101, 'app', 25);
  row([fn('hot_b', 0x401180n), work, main], 100, 101, 'app', 25);
  row([fn('cold', 0x401400n), main], 200, 200, 'other', 10);
  return b.build();
}

t.test('Chromium opens the page from file:// offline and shows the hot function', async (t) => {
  const missing = chromiumMissing();
  if (missing) return t.fail(missing);
  const dir = t.testdir({});
  const file = writeViewerPage(viewerProfile(), path.join(dir, 'flame graph.html'), TITLE);
  const pageUrl = pathToFileURL(file).href;

  let context: BrowserContext | undefined;
  try {
    context = await launchOffline(dir);

    const page = context.pages()[0] ?? (await context.newPage());
    const w = watch(page);
    await page.goto(`${pageUrl}#view=sandwich`);
    await waitForText(page, HOT);

    const hot = await sandwichRow(page, HOT);
    t.ok(hot, `${HOT} is listed in the sandwich view`);
    t.match(hot?.row ?? '', /\(75%\).*\(75%\)/, `${HOT}: 75% total and self`);
    t.equal(hot?.file, '/usr/bin/app', 'with its binary as the file');
    t.match((await sandwichRow(page, 'hot_b'))?.row ?? '', /\(25%\).*\(25%\)/, 'hot_b: 25%');
    t.equal(await page.title(), `${TITLE} - speedscope`, 'speedscope titles the page with our title');
    t.match(page.url(), /#localProfilePath=ebpfprof-embedded-profile&view=sandwich$/, 'user hash parameters kept');
    t.match(await bodyText(page), /app \(pid 100\)/, 'the heaviest process is shown first');
    t.equal(await sandwichRow(page, 'cold'), null, "another process's functions are not mixed in");

    // The default view is the canvas flame graph: the profile loads there too, without errors.
    const page2 = await context.newPage();
    const w2 = watch(page2);
    // profileURL would make speedscope fetch; the bootstrap drops it and keeps the embedded profile.
    await page2.goto(`${pageUrl}#profileURL=${encodeURIComponent('https://example.invalid/x.json')}&localProfilePath=/etc/passwd`);
    await waitForText(page2, 'app (pid 100)');
    t.ok((await canvasCount(page2)) > 0, 'flame graph canvas present');
    t.equal(await page2.title(), `${TITLE} - speedscope`);
    t.match(page2.url(), /#localProfilePath=ebpfprof-embedded-profile$/);

    for (const [name, x] of [['sandwich page', w], ['flame graph page', w2]] as const) {
      t.same(x.errors, [], `${name}: no page errors, console errors or alerts`);
      t.same(x.requests.filter((u) => !u.startsWith('file:') && !u.startsWith('data:')), [], `${name}: no network requests`);
      t.same(x.requests.filter((u) => u.startsWith('file:')).map((u) => u.replace(/#.*$/, '')), [pageUrl], `${name}: the only file read is the page itself`);
    }
  } finally {
    await context?.close();
  }
});

t.test('a rich profile (kernel frames, odd names) renders too', async (t) => {
  const missing = chromiumMissing();
  if (missing) return t.fail(missing);
  const dir = t.testdir({});
  const file = writeViewerPage(richProfile(), path.join(dir, 'rich.html'), '</script><b>x</b>');
  const context = await launchOffline(dir);
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const w = watch(page);
    await page.goto(`${pathToFileURL(file).href}#view=sandwich`);
    await waitForText(page, 'ksys_write');
    t.equal((await sandwichRow(page, 'ksys_write'))?.file, '[kernel.kallsyms]', 'kernel frame with its mapping');
    t.ok(await sandwichRow(page, 'ns::Widget::render(int)'), 'demangled C++ name');
    t.equal(await page.title(), '</script><b>x</b> - speedscope', 'a hostile title stays text');
    t.same(w.errors, []);
  } finally {
    await context.close();
  }
});

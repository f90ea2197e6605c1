// SPDX-License-Identifier: Apache-2.0
// Headless Chromium for the viewer tests: offline, sandboxed to file:/data: URLs, with page errors
// and requests recorded. speedscope draws flame graphs on a canvas, so assertions go through its
// sandwich view, a DOM table of functions.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

// The tests compile without the DOM lib; page.evaluate callbacks run in the browser and need only this.
interface DomCell {
  textContent: string | null;
  getAttribute(name: string): string | null;
  closest(selector: string): { textContent: string | null } | null;
}
declare const document: { body: { innerText: string }; querySelectorAll(selector: string): ArrayLike<DomCell> };

export const CHROMIUM = process.env['EBPFPROF_CHROMIUM'] ?? '/usr/bin/chromium';

/** Null when Chromium is present; otherwise the failure message (CI installs it, so it must be there). */
export function chromiumMissing(): string | null {
  return fs.existsSync(CHROMIUM)
    ? null
    : `Chromium is required at ${CHROMIUM} for the viewer tests (CI installs it: apt-get install chromium); set EBPFPROF_CHROMIUM to use another binary`;
}

/** An offline browser context with its own profile dir under `dir`; anything but file:/data: is refused. */
export async function launchOffline(dir: string): Promise<BrowserContext> {
  const context = await chromium.launchPersistentContext(path.join(dir, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    offline: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  await context.route(/^(?!file:|data:)/, (route) => route.abort());
  return context;
}

export interface Watch {
  requests: string[];
  errors: string[];
}

export function watch(page: Page): Watch {
  const w: Watch = { requests: [], errors: [] };
  page.on('request', (r) => w.requests.push(r.url()));
  page.on('pageerror', (e) => w.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') w.errors.push(`console.error: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    // speedscope reports import failures with alert(); never leave one blocking the page.
    w.errors.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  return w;
}

export function waitForText(page: Page, text: string): Promise<unknown> {
  return page.waitForFunction((n) => document.body.innerText.includes(n), text, { timeout: 60_000 });
}

export function bodyText(page: Page): Promise<string> {
  return page.evaluate(() => document.body.innerText);
}

export function canvasCount(page: Page): Promise<number> {
  return page.evaluate(() => document.querySelectorAll('canvas').length);
}

/** Text of the sandwich-view table row whose symbol cell is exactly `name`, or null. */
export async function sandwichRow(page: Page, name: string): Promise<{ row: string; file: string | null } | null> {
  return page.evaluate((n) => {
    for (const td of Array.from(document.querySelectorAll('td'))) {
      if ((td.textContent ?? '').trim() === n) return { row: td.closest('tr')?.textContent ?? '', file: td.getAttribute('title') };
    }
    return null;
  }, name);
}

// End-to-end check of the fleetstream dispatcher dashboard in headless Chromium.
//
// Env:
//   FLEETSTREAM_URL    base URL of a running API, e.g. http://127.0.0.1:18080
//   FLEETSTREAM_TOKEN  bearer token accepted by that API
//   SCREENSHOT         output path of the full-page PNG
//   CHROMIUM           optional, Chromium binary (default /usr/bin/chromium)
//
// The caller must keep posting trip events while this runs, and must have at
// least one available driver in some cell.
//
// On success prints one JSON line {"cells","feed","nearby","screenshot"} and
// exits 0. On any failed expectation prints "dashboard e2e: FAIL: ..." to
// stderr and exits 1. Never runs longer than 90 s.

import { mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';

const OVERALL_MS = 90_000;
const started = Date.now();
const deadline = started + OVERALL_MS;

let browser = null;
let page = null;
let finished = false;
const pageProblems = [];

function log(msg) {
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  process.stderr.write(`dashboard e2e [${secs}s]: ${msg}\n`);
}

// Milliseconds a step may wait: its own cap, but never past the overall deadline.
function budget(capMs) {
  return Math.max(1, Math.min(capMs, deadline - Date.now() - 2_000));
}

async function fail(msg) {
  if (finished) return;
  finished = true;
  process.stderr.write(`dashboard e2e: FAIL: ${msg}\n`);
  if (pageProblems.length) {
    process.stderr.write(`dashboard e2e: page problems:\n  ${pageProblems.slice(-10).join('\n  ')}\n`);
  }
  if (page && process.env.SCREENSHOT) {
    const shot = process.env.SCREENSHOT.replace(/\.png$/i, '') + '.failure.png';
    try {
      await withTimeout(page.screenshot({ path: shot, fullPage: true, timeout: 5_000 }), 6_000);
      process.stderr.write(`dashboard e2e: failure screenshot: ${shot}\n`);
    } catch {
      // Best effort only.
    }
  }
  await closeBrowser();
  process.exit(1);
}

function withTimeout(promise, ms) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  try {
    await withTimeout(b.close(), 5_000);
  } catch {
    // Chromium did not shut down in time; the process exit takes it along.
  }
}

// Run one step; turn any error (Playwright timeouts included) into a clear failure.
async function step(what, fn) {
  log(what);
  try {
    return await fn();
  } catch (err) {
    const detail = String((err && err.message) || err).split('\n')[0];
    await fail(`${what}: ${detail}`);
    return undefined; // not reached
  }
}

// Hard watchdog: whatever hangs, we stop at 90 s.
const watchdog = setTimeout(() => {
  fail(`overall time limit of ${OVERALL_MS / 1000} s exceeded`).finally(() => process.exit(1));
  setTimeout(() => process.exit(1), 8_000).unref();
}, OVERALL_MS);

process.on('unhandledRejection', (err) => {
  fail(`unexpected error: ${(err && err.message) || err}`);
});

async function main() {
  const baseUrl = (process.env.FLEETSTREAM_URL || '').replace(/\/+$/, '');
  const token = process.env.FLEETSTREAM_TOKEN || '';
  const screenshot = process.env.SCREENSHOT || '';
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

  const missing = [
    ['FLEETSTREAM_URL', baseUrl],
    ['FLEETSTREAM_TOKEN', token],
    ['SCREENSHOT', screenshot],
  ].filter(([, v]) => !v).map(([k]) => k);
  if (missing.length) await fail(`missing environment variable(s): ${missing.join(', ')}`);
  if (!/^https?:\/\//.test(baseUrl)) await fail(`FLEETSTREAM_URL must start with http:// or https:// (got ${baseUrl})`);
  if (!existsSync(executablePath)) await fail(`Chromium not found at ${executablePath} (set CHROMIUM)`);

  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    await fail(`cannot load playwright-core (run npm install in ${path.dirname(new URL(import.meta.url).pathname)}): ${err.message}`);
  }

  browser = await step(`launching ${executablePath}`, () =>
    chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'], timeout: budget(30_000) }),
  );
  page = await step('opening a page', () => browser.newPage({ viewport: { width: 1400, height: 1000 } }));
  page.on('pageerror', (err) => pageProblems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') pageProblems.push(`console.${msg.type()}: ${msg.text()}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) pageProblems.push(`HTTP ${res.status()} ${res.url().replace(/([?&](access_)?token=)[^&]+/, '$1***')}`);
  });

  const response = await step(`loading ${baseUrl}/`, () =>
    page.goto(`${baseUrl}/?token=${encodeURIComponent(token)}`, {
      waitUntil: 'domcontentloaded',
      timeout: budget(20_000),
    }),
  );
  if (!response || !response.ok()) {
    await fail(`loading ${baseUrl}/: HTTP ${response ? response.status() : 'no response'}`);
  }

  await step('waiting for #status to read "live"', () =>
    page.waitForFunction(
      () => (document.querySelector('#status')?.textContent || '').trim() === 'live',
      null,
      { timeout: budget(20_000) },
    ),
  );

  await step('waiting for at least one polygon.cell on #map', () =>
    page.waitForSelector('#map polygon.cell', { state: 'attached', timeout: budget(20_000) }),
  );

  // Count trip events received so far; the feed list is capped at 50 items,
  // so also watch the page's running total (#feed[data-received]).
  const before = await step('reading the live feed', () =>
    page.evaluate(() => ({
      items: document.querySelectorAll('#feed li').length,
      received: Number(document.querySelector('#feed')?.dataset.received || 0),
    })),
  );
  await step(`waiting for a new trip event in #feed (had ${before.items})`, () =>
    page.waitForFunction(
      (b) =>
        document.querySelectorAll('#feed li').length > b.items ||
        Number(document.querySelector('#feed')?.dataset.received || 0) > b.received,
      before,
      { timeout: budget(30_000) },
    ),
  );

  // Click the centre of the cell with the most available drivers.
  const target = await step('choosing the cell with the highest data-supply', () =>
    page.evaluate(() => {
      let best = null;
      for (const el of document.querySelectorAll('#map polygon.cell')) {
        const supply = Number(el.getAttribute('data-supply'));
        if (supply > 0 && (!best || supply > best.supply)) best = { cell: el.getAttribute('data-cell'), supply };
      }
      return best;
    }),
  );
  if (!target) await fail('no polygon.cell has data-supply > 0 (no available drivers on the map)');
  log(`cell ${target.cell} has supply ${target.supply}`);

  const cell = page.locator(`#map polygon.cell[data-cell="${target.cell}"]`);
  await step(`clicking the centre of cell ${target.cell}`, async () => {
    await cell.scrollIntoViewIfNeeded({ timeout: budget(10_000) });
    const box = await cell.boundingBox({ timeout: budget(10_000) });
    if (!box) throw new Error('cell polygon has no bounding box (not rendered?)');
    // page.mouse rather than locator.click: a trip dot drawn on top of the
    // cell must not count as "intercepting" the click; the map handles it.
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  });

  await step('waiting for #nearby li', () =>
    page.waitForSelector('#nearby li', { state: 'attached', timeout: budget(15_000) }),
  );

  await step(`writing screenshot ${screenshot}`, async () => {
    await mkdir(path.dirname(path.resolve(screenshot)), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true, timeout: budget(15_000) });
  });

  const counts = await step('counting elements', () =>
    page.evaluate(() => ({
      cells: document.querySelectorAll('#map polygon.cell').length,
      feed: document.querySelectorAll('#feed li').length,
      nearby: document.querySelectorAll('#nearby li').length,
    })),
  );

  finished = true;
  clearTimeout(watchdog);
  await closeBrowser();
  log(`passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  process.stdout.write(`${JSON.stringify({ ...counts, screenshot })}\n`);
  process.exit(0);
}

main().catch((err) => fail(`unexpected error: ${(err && err.stack) || err}`));

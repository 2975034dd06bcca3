// Fills a running tidemark serve with VOLUMES volumes and SNAPSHOTS snapshots (spread evenly), then
// loads the console's dashboard in headless chromium RUNS times, each in a fresh browser context
// (cold cache), and prints bytes transferred (headers + encoded bodies of every response) and the
// time from navigation start until the dashboard is rendered and the page is interactive.
// Usage: node dashboard-load.mjs URL TOKEN   (dashboard-load.sh starts the server and calls this)
import { chromium } from 'playwright-core';

const [url, token] = process.argv.slice(2);
const VOLUMES = +(process.env.VOLUMES ?? 1000);
const SNAPSHOTS = +(process.env.SNAPSHOTS ?? 20000);
const RUNS = +(process.env.RUNS ?? 5);
const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };

async function post(path, body) {
  const r = await fetch(new URL(path, url), { method: 'POST', headers, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
}

async function parallel(n, count, work) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < count) await work(next++);
  }));
}

const started = Date.now();
await parallel(8, VOLUMES, i => post('/api/v1/volumes', { name: `vol${String(i).padStart(4, '0')}`, sizeBytes: 10 * 2 ** 30 }));
await parallel(8, SNAPSHOTS, i => post(`/api/v1/volumes/vol${String(i % VOLUMES).padStart(4, '0')}/snapshots`, { name: `s${Math.floor(i / VOLUMES)}` }));
console.log(`filled: ${VOLUMES} volumes, ${SNAPSHOTS} snapshots in ${((Date.now() - started) / 1000).toFixed(0)} s`);

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
const results = [];
for (let run = 0; run < RUNS; run++) {
  const context = await browser.newContext({ baseURL: url, viewport: { width: 1280, height: 900 } });
  const signIn = await context.request.post('/console/session', { data: { token } });
  if (!signIn.ok()) throw new Error(`sign-in: ${signIn.status()}`);
  const page = await context.newPage();
  const responses = [];
  page.on('requestfinished', request => responses.push(request.sizes().then(s => ({ url: request.url(), bytes: s.responseHeadersSize + s.responseBodySize }))));
  await page.goto('/');
  await page.waitForSelector('body[data-ready-ms]');
  await page.locator('#main table').first().waitFor();
  const readyMs = +(await page.getAttribute('body', 'data-ready-ms'));
  const sizes = await Promise.all(responses);
  // Where the time went: each resource's request start and response end (ms since navigation start).
  const timeline = await page.evaluate(() => performance.getEntriesByType('resource')
    .map(e => `${new URL(e.name).pathname} ${Math.round(e.requestStart)}-${Math.round(e.responseEnd)}`).join(', '));
  const bytes = sizes.reduce((a, s) => a + s.bytes, 0);
  results.push({ readyMs, bytes, requests: sizes.length, detail: sizes.map(s => `${new URL(s.url).pathname} ${s.bytes}`).join(', '), timeline });
  await context.close();
}
await browser.close();
for (const r of results) console.log(`run: ${r.readyMs} ms to interactive, ${(r.bytes / 1024).toFixed(0)} KiB in ${r.requests} responses (${r.detail}); timeline ms: ${r.timeline}`);
const median = key => [...results].sort((a, b) => a[key] - b[key])[Math.floor(results.length / 2)][key];
console.log(`median: ${median('readyMs')} ms to interactive, ${(median('bytes') / 1024).toFixed(0)} KiB transferred (goal: < 1000 ms, < 500 KB)`);

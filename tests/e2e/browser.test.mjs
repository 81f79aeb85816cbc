// portico's real-browser end-to-end test.
//
// It runs the classic app of examples/same-origin/ exactly as a user would: the C++ api_server
// (which also serves the page), the C++ ws_server, the Node socket.io server, and portico in front
// of them with that example's routes.conf, TLS with a fresh self-signed certificate and the
// port-80-style redirect listener. Then Debian's Chromium (driven by playwright-core, never a
// downloaded browser) opens http://127.0.0.1:HTTP_PORT/ and the test reads what the page saw.
//
//   node tests/e2e/browser.test.mjs          (after `npm ci` here and in examples/same-origin;
//                                             bash tests/e2e/run.sh does all of it)
//
// Environment: PORTICO_BUILD_DIR (default build/) holds portico and examples/{api_server,ws_server};
// CHROMIUM (default /usr/bin/chromium). The last line printed is always `N passed, M failed`.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const EXAMPLE = path.join(ROOT, 'examples', 'same-origin');
const BUILD = path.resolve(ROOT, process.env.PORTICO_BUILD_DIR || 'build');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = path.join(HERE, 'same-origin.png');
const STATUS_SCREENSHOT = path.join(HERE, 'status-page.png');
const WHOLE_RUN_LIMIT_MS = 100_000;  // the brief: the whole run under two minutes
const STEP_LIMIT_MS = 20_000;

// ---- the report ------------------------------------------------------------------------------

// Every check is declared up front, so a run that stops early still counts the ones it never
// reached as failed, and the last line always adds up to the same total.
const CHECKS = [
  ['setup', 'certificate, backends and portico started'],
  ['redirect', 'http:// on the redirect port lands on https:// (301)'],
  ['api', 'fetch(/api/hello) answered and the backend saw X-Forwarded-Proto: https'],
  ['socketio-upgrade', 'socket.io started with long-polling and upgraded to websocket'],
  ['socketio-ack', 'socket.io emit/ack round-trip over the upgraded transport'],
  ['ws-echo', 'plain WebSocket: 100 messages echoed through /ws'],
  ['console', 'no console error (CORS, mixed content, WebSocket), page error or failed request'],
  ['screenshot', 'screenshot saved with every check on the page green'],
  ['other-origin', 'a page from another origin cannot open a WebSocket to portico'],
  ['status-page', 'the --admin status page shows the routes and backends, and a screenshot'],
];
const results = new Map();  // name -> { ok, detail }

let finished = false;
function record(name, ok, detail) {
  // After finish() has counted, nothing more is printed: the summary stays the last line.
  if (finished || results.has(name)) return;
  results.set(name, { ok, detail });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
}

async function finish(reason) {
  if (finished) return;
  if (reason) console.log(`aborted: ${reason}`);
  for (const [name] of CHECKS) {
    if (!results.has(name)) record(name, false, 'not run');
  }
  finished = true;  // (everything above is synchronous: a second finish() cannot interleave)
  const failed = [...results.values()].filter((r) => !r.ok).length;
  const passed = results.size - failed;
  if (failed > 0) dumpLogs();
  await cleanup();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

// ---- processes -------------------------------------------------------------------------------

const children = [];  // { name, child, lines, exited }
let browser = null;
let otherOriginServer = null;
let tempDir = null;

function startProcess(name, command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const proc = { name, child, lines: [], exited: null, waiters: new Set() };
  const onData = (stream) => {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      partial += chunk;
      let nl;
      while ((nl = partial.indexOf('\n')) >= 0) {
        proc.lines.push(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
      }
      for (const waiter of proc.waiters) waiter();
    });
  };
  onData(child.stdout);
  onData(child.stderr);
  child.on('exit', (code, signal) => {
    proc.exited = signal ? `signal ${signal}` : `status ${code}`;
    for (const waiter of proc.waiters) waiter();
  });
  child.on('error', (error) => {
    proc.exited = `spawn error ${error.message}`;
    for (const waiter of proc.waiters) waiter();
  });
  children.push(proc);
  return proc;
}

// Resolves with the first match of `regex` in the process's output (from line `from` on).
function waitForLine(proc, regex, timeoutMs = STEP_LIMIT_MS, from = 0) {
  return new Promise((resolve, reject) => {
    let timer = null;
    const check = () => {
      for (let i = from; i < proc.lines.length; i++) {
        const match = proc.lines[i].match(regex);
        if (match) {
          done();
          resolve(match);
          return;
        }
      }
      if (proc.exited) {
        done();
        reject(new Error(`${proc.name} exited (${proc.exited}) before printing ${regex}`));
      }
    };
    const done = () => {
      clearTimeout(timer);
      proc.waiters.delete(check);
    };
    timer = setTimeout(() => {
      done();
      reject(new Error(`${proc.name} did not print ${regex} within ${timeoutMs} ms`));
    }, timeoutMs);
    proc.waiters.add(check);
    check();
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function dumpLogs() {
  for (const proc of children) {
    const tail = proc.lines.slice(-40);
    console.log(`---- ${proc.name} (${proc.exited || 'running'}), last ${tail.length} lines ----`);
    for (const line of tail) console.log(`  ${line}`);
  }
}

async function cleanup() {
  if (browser) {
    const closing = browser.close().catch(() => {});
    await Promise.race([closing, new Promise((r) => setTimeout(r, 5000))]);
    browser = null;
  }
  if (otherOriginServer) {
    otherOriginServer.closeAllConnections?.();
    otherOriginServer.close();
    otherOriginServer = null;
  }
  const alive = children.filter((p) => !p.exited && p.child.pid);
  for (const proc of alive) proc.child.kill('SIGTERM');
  const deadline = Date.now() + 3000;
  while (alive.some((p) => !p.exited) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const proc of alive) {
    if (!proc.exited) proc.child.kill('SIGKILL');
  }
  if (tempDir) {
    fs.rmSync(tempDir, { recursive: true, force: true });
    tempDir = null;
  }
}

// Last resort: whatever way this process ends, no child outlives it.
process.on('exit', () => {
  for (const proc of children) {
    if (!proc.exited && proc.child.pid) {
      try {
        proc.child.kill('SIGKILL');
      } catch {}
    }
  }
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => finish(`got ${signal}`));
}
process.on('unhandledRejection', (error) => finish(`unhandled rejection: ${error?.stack || error}`));
setTimeout(() => finish(`the whole run took over ${WHOLE_RUN_LIMIT_MS / 1000} s`),
           WHOLE_RUN_LIMIT_MS).unref();

// ---- setup -----------------------------------------------------------------------------------

function need(file, hint) {
  if (!fs.existsSync(file)) throw new Error(`missing ${file}: ${hint}`);
}

async function setUp() {
  const portico = path.join(BUILD, 'portico');
  const apiServer = path.join(BUILD, 'examples', 'api_server');
  const wsServer = path.join(BUILD, 'examples', 'ws_server');
  const buildHint = 'build it: cmake -S . -B build -G Ninja && ' +
                    'cmake --build build --target portico api_server ws_server';
  need(portico, buildHint);
  need(apiServer, buildHint);
  need(wsServer, buildHint);
  need(CHROMIUM, 'install Debian\'s chromium (apt-get install chromium), or set CHROMIUM');
  need(path.join(EXAMPLE, 'node_modules', 'socket.io'), 'run npm ci in examples/same-origin');

  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'portico-e2e-'));
  const cert = path.join(tempDir, 'cert.pem');
  const key = path.join(tempDir, 'key.pem');
  const openssl = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { encoding: 'utf8', timeout: 10_000 });
  if (openssl.status !== 0) {
    throw new Error(`openssl req failed (${openssl.status}): ${openssl.stderr || openssl.error}`);
  }

  // The backends take port 0 and print the port they got: no race with other tests.
  const api = startProcess('api_server', apiServer,
                           ['--port', '0', '--static', path.join(EXAMPLE, 'public'), '--quiet']);
  const ws = startProcess('ws_server', wsServer, ['--port', '0', '--quiet']);
  const sio = startProcess('socket.io server', process.execPath,
                           [path.join(EXAMPLE, 'server.js'), '--port', '0'], { cwd: EXAMPLE });
  const ports = {
    api: Number((await waitForLine(api, /api_server listening on .*:(\d+)$/))[1]),
    ws: Number((await waitForLine(ws, /ws_server listening on .*:(\d+)$/))[1]),
    sio: Number((await waitForLine(sio, /socketio: listening addr=.*:(\d+)$/))[1]),
  };

  // The example's own routes.conf, with its fixed ports swapped for the ones the backends got.
  const template = fs.readFileSync(path.join(EXAMPLE, 'routes.conf'), 'utf8');
  const routes = template.replaceAll('127.0.0.1:3000', `127.0.0.1:${ports.api}`)
                         .replaceAll('127.0.0.1:3001', `127.0.0.1:${ports.sio}`)
                         .replaceAll('127.0.0.1:4000', `127.0.0.1:${ports.ws}`);
  for (const want of [`/api/ +http://127.0.0.1:${ports.api}`, `/socket.io/ +http://127.0.0.1:${ports.sio}`,
                      `/ws +http://127.0.0.1:${ports.ws}`, `/ +http://127.0.0.1:${ports.api}`]) {
    if (!new RegExp(`^${want.replaceAll('.', '\\.')}(\\s|$)`, 'm').test(routes)) {
      throw new Error(`examples/same-origin/routes.conf no longer has a line like "${want}"`);
    }
  }
  const routesFile = path.join(tempDir, 'routes.conf');
  fs.writeFileSync(routesFile, routes);

  // portico needs both ports before it starts (the redirect names the https port). A port picked
  // here could be taken before portico binds it; then portico exits with 2 and we try again.
  for (let attempt = 1; ; attempt++) {
    ports.https = await freePort();
    ports.http = await freePort();
    ports.admin = await freePort();
    if (new Set([ports.https, ports.http, ports.admin]).size !== 3) continue;
    const proxy = startProcess(`portico (attempt ${attempt})`, portico, [
      '--routes', routesFile, '--cert', cert, '--key', key, '--listen', '127.0.0.1',
      '--https-port', String(ports.https), '--http-port', String(ports.http), '--log-level', 'info',
      '--admin', `127.0.0.1:${ports.admin}`,
    ]);
    try {
      await waitForLine(proxy, new RegExp(`listening kind=\\S+ addr=127\\.0\\.0\\.1:${ports.https}\\b`));
      await waitForLine(proxy, new RegExp(`listening kind=\\S+ addr=127\\.0\\.0\\.1:${ports.http}\\b`));
      await waitForLine(proxy, new RegExp(`listening kind=admin addr=127\\.0\\.0\\.1:${ports.admin}\\b`));
      return { ports, proxy };
    } catch (error) {
      if (attempt >= 3 || !proxy.exited) throw error;
    }
  }
}

// ---- the browser -----------------------------------------------------------------------------

function otherOriginPage(httpsPort) {
  return `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">
<title>another origin</title><p>A page on another origin trying portico's WebSocket.</p>
<script>
window.__result = { events: [], done: false };
const ws = new WebSocket('wss://127.0.0.1:${httpsPort}/ws');
ws.onopen = () => { window.__result.events.push('open'); ws.close(1000); };
ws.onerror = () => window.__result.events.push('error');
ws.onclose = (e) => { window.__result.events.push('close ' + e.code); window.__result.done = true; };
</script>`;
}

async function main() {
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (error) {
    record('setup', false, `cannot load playwright-core (run npm ci in tests/e2e): ${error.message}`);
    return;
  }

  let ports, proxy;
  try {
    ({ ports, proxy } = await setUp());
  } catch (error) {
    record('setup', false, error.message);
    return;
  }

  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: STEP_LIMIT_MS,
    });
  } catch (error) {
    record('setup', false, `chromium did not start: ${error.message}`);
    return;
  }
  record('setup', true, `api_server :${ports.api}, ws_server :${ports.ws}, socket.io :${ports.sio}, ` +
         `portico https :${ports.https} http :${ports.http}, ${browser.version()}`);

  // The certificate is self-signed: the context accepts it (for the page, fetch and wss alike).
  const context = await browser.newContext({ ignoreHTTPSErrors: true,
                                             viewport: { width: 1000, height: 760 } });
  context.setDefaultTimeout(STEP_LIMIT_MS);

  // ---- the app's page ----
  const page = await context.newPage();
  const problems = [];
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error' ||
        (message.type() === 'warning' && /cors|cross-origin|mixed content|websocket/i.test(text))) {
      problems.push(`console ${message.type()}: ${text}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => {
    problems.push(`request failed: ${request.method()} ${request.url()}: ` +
                  `${request.failure()?.errorText}`);
  });
  page.on('websocket', (socket) => {
    socket.on('socketerror', (error) => problems.push(`websocket ${socket.url()}: ${error}`));
  });

  const start = `http://127.0.0.1:${ports.http}/`;
  const landing = `https://127.0.0.1:${ports.https}/`;
  let response = null;
  try {
    response = await page.goto(start, { waitUntil: 'load' });
  } catch (error) {
    record('redirect', false, `opening ${start} failed: ${error.message}`);
  }
  if (response) {
    const hop = response.request().redirectedFrom();
    const hopResponse = hop ? await hop.response() : null;
    const ok = page.url() === landing && response.status() === 200 && hop?.url() === start &&
               hopResponse?.status() === 301 && hopResponse?.headers()['location'] === landing;
    record('redirect', ok, `${start} -> ${hopResponse?.status() ?? 'no redirect'} ` +
           `Location: ${hopResponse?.headers()['location'] ?? '-'} -> ${page.url()} ` +
           `(${response.status()})`);
  }

  let checks = null;
  if (response) {
    try {
      await page.waitForFunction(() => window.__checksDone === true, null,
                                 { timeout: STEP_LIMIT_MS });
    } catch {
      problems.push('the page did not finish its checks in time');
    }
    checks = await page.evaluate(() => window.__checks).catch(() => null);
  }
  const pageCheck = (name) => checks?.[name] ?? { ok: false, detail: 'the page reported nothing' };

  const api = pageCheck('api');
  record('api', api.ok === true && api.forwardedProto === 'https', api.detail);

  // socket.io: the page's own view, plus portico's access log, which shows the same path was
  // served as plain requests (polling) and then as a WebSocket tunnel (101).
  const sio = pageCheck('socketio');
  const pageSawUpgrade = sio.initialTransport === 'polling' && sio.transport === 'websocket';
  let tunnelLine = null;
  try {
    tunnelLine = (await waitForLine(proxy, /access: .*path=\/socket\.io\/.*status=101.*/, 5000))[0];
  } catch {}
  const pollingLine = proxy.lines.find((l) => /access: .*path=\/socket\.io\/.*status=200/.test(l));
  record('socketio-upgrade', pageSawUpgrade && Boolean(tunnelLine) && Boolean(pollingLine),
         `page: initial transport ${sio.initialTransport ?? '-'}, now ${sio.transport ?? '-'}; ` +
         `portico: ${pollingLine ? 'polling requests forwarded' : 'NO polling request logged'}, ` +
         `${tunnelLine ? 'upgrade relayed (status=101)' : 'NO 101 for /socket.io/ logged'}` +
         (sio.ok ? '' : `; page said: ${sio.detail}`));
  record('socketio-ack', sio.ok === true && sio.ackTransport === 'websocket', sio.detail);

  const ws = pageCheck('ws');
  record('ws-echo', ws.ok === true && ws.received === 100, ws.detail);

  // ---- the screenshot ----
  if (checks) {
    try {
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      const classes = await page.$$eval('.check', (els) => els.map((e) => `${e.id}:${e.className}`));
      const red = classes.filter((c) => !/\bok\b/.test(c));
      const size = fs.statSync(SCREENSHOT).size;
      record('screenshot', red.length === 0 && classes.length === 4 && size > 0,
             `${path.relative(ROOT, SCREENSHOT)} (${size} bytes); ` +
             (red.length === 0 ? `all ${classes.length} checks green` : `not green: ${red.join(', ')}`));
    } catch (error) {
      record('screenshot', false, error.message);
    }
  } else {
    record('screenshot', false, 'the page never loaded');
  }

  // Late errors (a WebSocket closing badly) show up after the checks: give them a moment.
  await new Promise((r) => setTimeout(r, 500));
  record('console', response !== null && problems.length === 0,
         problems.length === 0 ? 'none' : problems.join(' | '));
  await page.close();

  // ---- another origin ----
  // A throwaway page on http://127.0.0.1:OTHER/ (same context, so the certificate is accepted and
  // only the Origin can be the reason for a refusal) opens wss://127.0.0.1:HTTPS/ws.
  otherOriginServer = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(otherOriginPage(ports.https));
  });
  await new Promise((resolve) => otherOriginServer.listen(0, '127.0.0.1', resolve));
  const otherOrigin = `http://127.0.0.1:${otherOriginServer.address().port}`;
  const other = await context.newPage();
  const socketErrors = [];
  other.on('websocket', (socket) => socket.on('socketerror', (e) => socketErrors.push(e)));
  const logMark = proxy.lines.length;
  let events = [];
  try {
    await other.goto(`${otherOrigin}/`, { waitUntil: 'load' });
    await other.waitForFunction(() => window.__result.done === true, null, { timeout: 10_000 });
  } catch (error) {
    socketErrors.push(`waiting for the close event: ${error.message}`);
  }
  events = await other.evaluate(() => window.__result?.events ?? []).catch(() => []);
  let refusal = null;
  try {
    refusal = (await waitForLine(proxy, /refused origin=.*/, 3000, logMark))[0];
  } catch {}
  const refusedThisOrigin = refusal !== null && refusal.includes(`"${otherOrigin}"`);
  record('other-origin',
         !events.includes('open') && events.some((e) => e === 'error' || e.startsWith('close')) &&
             refusedThisOrigin,
         `from ${otherOrigin}: page events [${events.join(', ')}]` +
         (socketErrors.length ? `, browser: ${socketErrors.join('; ')}` : '') +
         `; portico: ${refusal ?? 'no "refused origin" line'}`);
  await other.close();

  // ---- the admin status page ----
  // It polls /status.json every 2 s: wait for the routes table and the request counter to fill.
  const status = await context.newPage();
  try {
    await status.goto(`http://127.0.0.1:${ports.admin}/`, { waitUntil: 'load' });
    await status.waitForFunction(
        () => document.querySelectorAll('#routes tr').length === 4 &&
              Number(document.getElementById('requests').textContent) > 0,
        null, { timeout: 10_000 });
    const rows = await status.$$eval('#routes tr', (trs) => trs.map((tr) => tr.textContent));
    const up = await status.$$eval('#routes .up', (els) => els.length);
    await status.screenshot({ path: STATUS_SCREENSHOT, fullPage: true });
    record('status-page', rows.length === 4 && up === 4,
           `${rows.length} routes, ${up} backends up; ${path.relative(ROOT, STATUS_SCREENSHOT)}`);
  } catch (error) {
    record('status-page', false, error.message);
  }
  await status.close();
}

main()
  .catch((error) => record('unexpected-error', false, error?.stack || String(error)))
  .finally(() => finish());

// The page's four checks. Each ends green or red exactly once; the results are also kept in
// window.__checks (and window.__checksDone turns true when all have ended) so that a test driving
// a real browser can read them.
'use strict';

const CHECK_TIMEOUT_MS = 15000;
const WS_MESSAGES = 100;

window.__checks = {};
window.__checksDone = false;
const LABELS = { https: 'HTTPS', api: 'API', socketio: 'socket.io', ws: 'WebSocket' };
const pending = new Set(Object.keys(LABELS));

function log(line) {
  document.getElementById('log').textContent += line + '\n';
}

function settle(name, ok, detail, extra = {}) {
  if (!pending.has(name)) return;  // the first verdict stands (a late error after success, a timeout)
  pending.delete(name);
  window.__checks[name] = { ok, detail, ...extra };
  const el = document.getElementById('check-' + name);
  el.className = 'check ' + (ok ? 'ok' : 'fail');
  el.textContent = (ok ? '\u2714 ' : '\u2718 ') + LABELS[name] + ': ' + detail;
  log(name + ': ' + (ok ? 'ok' : 'FAILED') + ': ' + detail);
  if (pending.size === 0) {
    const failed = Object.values(window.__checks).filter((c) => !c.ok).length;
    const summary = document.getElementById('summary');
    summary.textContent = failed === 0 ? 'all checks passed' : failed + ' check(s) failed';
    window.__checksDone = true;
  }
}

function deadline(name, what) {
  setTimeout(() => settle(name, false, what + ': no answer within ' + CHECK_TIMEOUT_MS + ' ms'),
             CHECK_TIMEOUT_MS);
}

// 1. The page itself came over https (portico's port-80 listener redirects there).
settle('https', location.protocol === 'https:', 'page loaded over ' + location.protocol + '//' +
       location.host);

// 2. The API, through the /api/ route. The backend reports the X-Forwarded-Proto it received.
deadline('api', 'GET /api/hello');
fetch('/api/hello')
  .then((response) => {
    if (!response.ok) throw new Error('HTTP ' + response.status);
    return response.json();
  })
  .then((body) => {
    settle('api', body.forwarded_proto === 'https',
           'GET /api/hello answered "' + body.message + '"; the backend saw X-Forwarded-Proto: ' +
           body.forwarded_proto, { forwardedProto: body.forwarded_proto });
  })
  .catch((error) => settle('api', false, 'GET /api/hello failed: ' + error));

// 3. socket.io, through the /socket.io/ route: the default transports start with long-polling
// (plain requests on /socket.io/) and then upgrade to a WebSocket on the same path. Only after the
// upgrade is an event emitted, so its acknowledgement travels over the WebSocket.
deadline('socketio', 'socket.io');
if (typeof io !== 'function') {
  settle('socketio', false, 'the socket.io client (/socket.io/socket.io.js) did not load');
} else {
  const socket = io({ reconnection: false, timeout: CHECK_TIMEOUT_MS });
  let initialTransport = null;
  let upgraded = false;
  let connected = false;

  const roundTrip = () => {
    if (!upgraded || !connected) return;
    const message = 'hello over socket.io ' + Date.now();
    const started = performance.now();
    socket.timeout(CHECK_TIMEOUT_MS).emit('echo', message, (error, reply) => {
      const transport = socket.io.engine.transport.name;
      const rttMs = Math.round(performance.now() - started);
      const extra = { initialTransport, transport, ackTransport: reply && reply.transport, rttMs };
      if (error) {
        settle('socketio', false, 'emit/ack timed out (' + error + ')', extra);
      } else if (reply.payload !== message) {
        settle('socketio', false, 'ack carried ' + JSON.stringify(reply.payload), extra);
      } else {
        settle('socketio', initialTransport === 'polling' && transport === 'websocket' &&
                             reply.transport === 'websocket',
               'started with ' + initialTransport + ', upgraded to ' + transport +
               '; emit/ack round-trip in ' + rttMs + ' ms (server saw ' + reply.transport + ')',
               extra);
      }
      socket.disconnect();
    });
  };

  // The manager's 'open' comes before the engine starts probing the WebSocket, so the 'upgrade'
  // event cannot be missed.
  socket.io.on('open', () => {
    const engine = socket.io.engine;
    initialTransport = engine.transport.name;
    log('socket.io: engine open over ' + initialTransport);
    engine.on('upgrade', (transport) => {
      log('socket.io: upgraded to ' + transport.name);
      upgraded = transport.name === 'websocket';
      roundTrip();
    });
  });
  socket.on('connect', () => {
    connected = true;
    log('socket.io: connected id=' + socket.id);
    roundTrip();
  });
  socket.on('connect_error', (error) => settle('socketio', false, 'connect_error: ' + error.message));
  socket.io.on('error', (error) => settle('socketio', false, 'manager error: ' + error));
}

// 4. A plain WebSocket to the C++ echo server through the /ws route: 100 messages, in order.
deadline('ws', 'WebSocket /ws');
{
  const ws = new WebSocket('wss://' + location.host + '/ws');
  let received = 0;
  ws.onopen = () => {
    log('ws: open');
    for (let i = 0; i < WS_MESSAGES; i++) ws.send('message ' + i);
  };
  ws.onmessage = (event) => {
    if (event.data !== 'message ' + received) {
      settle('ws', false, 'echo #' + received + ' was ' + JSON.stringify(event.data));
      ws.close(1000);
      return;
    }
    received++;
    if (received === WS_MESSAGES) {
      settle('ws', true, WS_MESSAGES + ' messages echoed in order over wss://' + location.host +
             '/ws', { received });
      ws.close(1000);
    }
  };
  ws.onerror = () => settle('ws', false, 'WebSocket error after ' + received + ' echoes');
  ws.onclose = (event) => {
    log('ws: closed code=' + event.code);
    settle('ws', false, 'closed (code ' + event.code + ') after ' + received + ' echoes');
  };
}

// The example's socket.io server: its own port, its own process, behind portico's /socket.io/ route.
//
//   node server.js --port 3001 [--host 127.0.0.1] [--quiet]
//
// It serves the socket.io client at /socket.io/socket.io.js (so the page needs no CDN) and answers
// the event 'echo' with an acknowledgement carrying the same payload and the transport the server
// saw it on. No CORS options: the page reaches this server through portico on the page's own
// origin, so the browser never makes a cross-origin request. One process needs no sticky
// sessions; several behind one route would (long-polling requests must reach the same process).
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

function parseArgs(argv) {
  const options = { port: Number(process.env.PORT) || 3001, host: '127.0.0.1', quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--port' && i + 1 < argv.length) {
      options.port = Number(argv[++i]);
    } else if (arg === '--host' && i + 1 < argv.length) {
      options.host = argv[++i];
    } else if (arg === '--quiet') {
      options.quiet = true;
    } else {
      console.error(`usage: node server.js [--port N] [--host ADDR] [--quiet] (unknown: ${arg})`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    console.error(`error socketio: bad port ${options.port}`);
    process.exit(2);
  }
  return options;
}

const options = parseArgs(process.argv.slice(2));
const log = (line) => {
  if (!options.quiet) console.error(`info socketio: ${line}`);
};

const httpServer = http.createServer((req, res) => {
  // Everything outside /socket.io/ is handled by other backends; say so plainly.
  res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end('not found: this server only answers /socket.io/\n');
});

const io = new Server(httpServer, { serveClient: true });

io.on('connection', (socket) => {
  const engine = socket.conn;
  log(`connect id=${socket.id} transport=${engine.transport.name} ` +
      `forwarded_proto=${socket.handshake.headers['x-forwarded-proto'] || '-'}`);
  engine.once('upgrade', (transport) => log(`upgrade id=${socket.id} transport=${transport.name}`));
  socket.on('echo', (payload, ack) => {
    if (typeof ack === 'function') ack({ payload, transport: engine.transport.name });
  });
  socket.on('disconnect', (reason) => log(`disconnect id=${socket.id} reason=${reason}`));
});

httpServer.listen(options.port, options.host, () => {
  const { address, port } = httpServer.address();
  // Always printed: the end-to-end test waits for this line.
  console.error(`info socketio: listening addr=${address}:${port}`);
});

const stop = () => {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

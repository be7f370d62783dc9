// The leaky app of the harness's pm2 part: the same file runs under
// memdrain, under PM2 in cluster mode, and alone. Each request works
// WORK_MS (20) milliseconds without blocking, as an app waiting on a
// database does, then keeps LEAK_KIB (24) KiB of Buffer memory for good,
// written so the pages are resident, as a real leak's are.
'use strict';
const http = require('http');

const port = Number(process.env.PORT);
const workMs = Number(process.env.WORK_MS ?? 20);
const leakBytes = Number(process.env.LEAK_KIB ?? 24) * 1024;
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`app.js: PORT is ${JSON.stringify(process.env.PORT)}; accepted: a TCP port number`);
  process.exit(2);
}

const kept = [];
const server = http.createServer((req, res) => {
  req.resume();
  setTimeout(() => {
    if (leakBytes > 0) kept.push(Buffer.alloc(leakBytes, 1));
    res.end('ok\n');
  }, workMs);
});
server.listen(port, '127.0.0.1');

// PM2's graceful reload sends SIGINT and waits kill_timeout: close the
// server (Node closes its idle kept-alive connections too) and exit once
// the requests in flight are answered, as PM2's documentation advises.
process.on('SIGINT', () => server.close(() => process.exit(0)));

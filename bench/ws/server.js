// The Node side of bench/ws/run.sh: node's cluster with the `ws` package,
// WORKERS workers on PORT, the same routes as server.lua. A broadcast
// goes to the primary, which relays it to every worker (how a Node
// cluster reaches every worker's clients without an external broker).
'use strict';
const cluster = require('cluster');
const http = require('http');
const WebSocket = require('ws');
const port = Number(process.env.PORT || 18090);
if (cluster.isPrimary) {
  const n = Number(process.env.WORKERS || 2);
  const workers = [];
  for (let i = 0; i < n; i++) workers.push(cluster.fork());
  for (const w of workers) {
    w.on('message', (m) => { for (const o of workers) o.send(m); });
  }
} else {
  const fan = new Set();
  const srv = http.createServer((req, res) => res.end('ok'));
  const wss = new WebSocket.Server({ server: srv });
  process.on('message', (m) => {
    for (const ws of fan) ws.send(m);
  });
  wss.on('connection', (ws, req) => {
    if (req.url === '/fan') {
      fan.add(ws);
      ws.on('close', () => fan.delete(ws));
    } else if (req.url === '/ctl') {
      ws.on('message', (m) => {
        const [, n, size] = m.toString().split(' ');
        const payload = 'x'.repeat(Number(size));
        for (let i = 0; i < Number(n); i++) process.send(payload);
        ws.send('sent');
      });
    } else {
      ws.on('message', (d, bin) => ws.send(d, { binary: bin }));
    }
  });
  srv.listen(port, '127.0.0.1');
}

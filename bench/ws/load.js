// The load of bench/ws/run.sh, with Node's `ws` as the client.
//   node load.js echo PORT CONNS DUR_S SIZE WINDOW
//     CONNS connections to /echo, each keeping WINDOW messages of SIZE
//     bytes in flight for DUR_S seconds; prints {msgs, secs}.
//   node load.js fan PORT CLIENTS N SIZE
//     CLIENTS connections to /fan, then 'BCAST N SIZE' on /ctl; prints
//     {deliveries, secs} once every client has N messages (bounded: 60 s).
'use strict';
const WebSocket = require('ws');
const [mode, port, a, b, c, d] = process.argv.slice(2);
const base = `ws://127.0.0.1:${port}`;
const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
setTimeout(() => out({ error: 'timeout' }), 60000).unref();

if (mode === 'echo') {
  const conns = Number(a), secs = Number(b), payload = 'x'.repeat(Number(c));
  const window = Number(d);
  let msgs = 0, open = 0, start = 0, stop = false;
  for (let i = 0; i < conns; i++) {
    const ws = new WebSocket(base + '/echo');
    ws.on('open', () => {
      if (++open === conns) {
        start = Date.now();
        setTimeout(() => { stop = true; out({ msgs, secs: (Date.now() - start) / 1000 }); }, secs * 1000);
      }
      for (let k = 0; k < window; k++) ws.send(payload);
    });
    ws.on('message', () => {
      if (start) msgs++;
      if (!stop) ws.send(payload);
    });
  }
} else if (mode === 'fan') {
  const clients = Number(a), n = Number(b), size = Number(c);
  let open = 0, done = 0, start = 0;
  for (let i = 0; i < clients; i++) {
    const ws = new WebSocket(base + '/fan');
    let got = 0;
    ws.on('open', () => { if (++open === clients) go(); });
    ws.on('message', () => {
      if (++got === n && ++done === clients) {
        out({ deliveries: clients * n, secs: (Date.now() - start) / 1000 });
      }
    });
  }
  function go() {
    // Every /fan client is subscribed once its handshake is answered.
    setTimeout(() => {
      const ctl = new WebSocket(base + '/ctl');
      ctl.on('open', () => { start = Date.now(); ctl.send(`BCAST ${n} ${size}`); });
    }, 200);
  }
}

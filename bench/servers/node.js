// The benchmark's Node.js peer: the same routes as bench/servers/luacluster.lua
// with Node's own cluster and http modules.
'use strict';
const cluster = require('cluster');
const http = require('http');
const os = require('os');

const port = Number(process.env.PORT) || 8000;
const workers = Number(process.env.WORKERS) || os.cpus().length;

const TEXT = { 'Content-Type': 'text/plain' };

function work() {
  let sum = 0;
  for (let i = 1; i <= 1e7; i++) sum += i;
  return sum + '\n';
}

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} exited (${signal || code})`);
  });
} else {
  http.createServer((req, res) => {
    const url = req.url;
    if (url === '/') {
      res.writeHead(200, TEXT);
      res.end('Hello World\n');
    } else if (url === '/cpu') {
      for (let i = 0; i < 1e7; i++) {}
      res.writeHead(200, TEXT);
      res.end('done\n');
    } else if (url === '/work') {
      const body = work();
      res.writeHead(200, TEXT);
      res.end(body);
    } else {
      res.writeHead(404, TEXT);
      res.end('Not Found\n');
    }
  }).listen(port);
}

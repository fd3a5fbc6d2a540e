// The TLS benchmark's Node.js peer: Node's cluster and https modules,
// WORKERS workers serving "Hello World\n" on PORT with KEY and CERT.
'use strict';
const cluster = require('cluster');
const https = require('https');
const fs = require('fs');

const workers = Number(process.env.WORKERS) || 2;
if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  https.createServer({
    key: fs.readFileSync(process.env.KEY),
    cert: fs.readFileSync(process.env.CERT),
  }, (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('Hello World\n');
  }).listen(Number(process.env.PORT));
}

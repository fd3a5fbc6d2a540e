// The benchmark's Node.js peer: the same routes as bench/servers/luacluster.lua
// with Node's own cluster and http modules; /redis with the `redis` npm
// package (bench/package.json), one shared client per worker; /pg with the
// `pg` npm package's Pool (PG_POOL connections, 10 by default, as the
// luacluster peer's), one row by primary key per request.
'use strict';
const cluster = require('cluster');
const http = require('http');
const os = require('os');

const port = Number(process.env.PORT) || 8000;
const workers = Number(process.env.WORKERS) || os.cpus().length;
const redisPort = Number(process.env.REDIS_PORT) || 0;

const TEXT = { 'Content-Type': 'text/plain' };
const JSON_TYPE = { 'Content-Type': 'application/json' };
const BODY_LIMIT = 64 * 1024;

function work() {
  let sum = 0;
  for (let i = 1; i <= 1e7; i++) sum += i;
  return sum + '\n';
}

function order(req, res) {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > BODY_LIMIT) {
      res.writeHead(413, { Connection: 'close' });
      res.end('Payload Too Large');
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    let items;
    try {
      items = JSON.parse(Buffer.concat(chunks).toString()).items;
    } catch (e) {}
    if (!Array.isArray(items)) {
      res.writeHead(400, TEXT);
      res.end('Bad Request\n');
      return;
    }
    let total = 0;
    for (const item of items) total += item.qty * item.price;
    res.writeHead(200, JSON_TYPE);
    res.end(JSON.stringify({
      total: Math.round(total * 100) / 100, items: items.length,
    }));
  });
}

// The worker's one client (its connection is shared by all requests; the
// package pipelines their commands), connected before the server listens
// when REDIS_PORT is set.
let redis = null;

function getRedis(res) {
  redis.get('bench:greeting').then((value) => {
    if (value === null) {
      res.writeHead(404, TEXT);
      res.end('Not Found\n');
      return;
    }
    res.writeHead(200, TEXT);
    res.end(value);
  }, (err) => {
    res.writeHead(502, TEXT);
    res.end('get: ' + err.message + '\n');
  });
}

async function connectRedis() {
  if (!redisPort) return;
  let createClient;
  try {
    ({ createClient } = require('redis'));
  } catch (e) {
    console.log('redis package missing (sh vendor/setup.sh bench): ' +
      e.message);
    return;
  }
  const client = createClient({ socket: { host: '127.0.0.1', port: redisPort } });
  client.on('error', (err) => console.log('redis: ' + err.message));
  try {
    await client.connect();
    redis = client;
  } catch (e) {
    console.log('redis: ' + e.message);
  }
}

// The worker's pg Pool, made on the first /pg request.
let pool = null;
let nextId = 0;

function getPg(res) {
  if (!pool) {
    const { Pool } = require('pg');
    pool = new Pool({ connectionString: process.env.PG_URL,
      max: Number(process.env.PG_POOL) || 10 });
    pool.on('error', (err) => console.log('pg: ' + err.message));
  }
  nextId = nextId % 1000 + 1;
  pool.query('SELECT body FROM bench_items WHERE id = $1', [nextId]).then(
    (r) => {
      res.writeHead(200, TEXT);
      res.end(r.rows[0].body);
    }, (err) => {
      res.writeHead(502, TEXT);
      res.end('query: ' + err.message + '\n');
    });
}

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} exited (${signal || code})`);
  });
} else {
  connectRedis().then(() => http.createServer((req, res) => {
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
    } else if (url === '/order' && req.method === 'POST') {
      order(req, res);
    } else if (url === '/pg') {
      getPg(res);
    } else if (url === '/redis') {
      if (redis) {
        getRedis(res);
      } else {
        res.writeHead(502, TEXT);
        res.end('no redis client\n');
      }
    } else {
      res.writeHead(404, TEXT);
      res.end('Not Found\n');
    }
  }).listen(port));
}

// IPC benchmark, Node side: the same measures as bench/ipc/ipc.lua.
const cluster = require('cluster');
const N = +process.env.N || 200000;
const PINGS = +process.env.PINGS || 20000;
const FORKS = +process.env.FORKS || 20;

if (cluster.isWorker) {
  process.on('message', (m) => {
    if (m.mode === 'oneway') {
      if (m.i === m.n) process.send({ done: m.i });
    } else {
      process.send(m);
    }
  });
  return;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;
const report = (name, v, unit) => console.log(`${name} ${v.toFixed(1)} ${unit}`);

const w = cluster.fork();
const steps = [];
function nextstep() {
  const s = steps.shift();
  if (s) s(); else w.disconnect();
}

steps.push(() => {
  const t0 = now(); let i = 0;
  const onmsg = () => {
    i++;
    if (i === PINGS) {
      w.off('message', onmsg);
      report('pingpong', PINGS / ((now() - t0) / 1000), 'msg/s');
      return nextstep();
    }
    w.send({ mode: 'pingpong', i, payload: 'hello world' });
  };
  w.on('message', onmsg);
  w.send({ mode: 'pingpong', i: 0, payload: 'hello world' });
});

steps.push(() => {
  const t0 = now(); let got = 0;
  const onmsg = () => {
    got++;
    if (got === N) {
      w.off('message', onmsg);
      report('roundtrip', N / ((now() - t0) / 1000), 'msg/s');
      return nextstep();
    }
  };
  w.on('message', onmsg);
  for (let i = 1; i <= N; i++) w.send({ mode: 'roundtrip', i, payload: 'hello world' });
});

steps.push(() => {
  const t0 = now();
  const onmsg = () => {
    w.off('message', onmsg);
    report('oneway', N / ((now() - t0) / 1000), 'msg/s');
    return nextstep();
  };
  w.on('message', onmsg);
  for (let i = 1; i <= N; i++) w.send({ mode: 'oneway', i, n: N, payload: 'hello world' });
});

w.on('online', nextstep);

cluster.on('exit', (worker) => {
  if (worker !== w) return;
  const times = []; let k = 0;
  const one = () => {
    k++;
    if (k > FORKS) {
      times.sort((a, b) => a - b);
      report('online', times[Math.ceil(times.length / 2) - 1], 'ms');
      return;
    }
    const t0 = now();
    const x = cluster.fork();
    x.on('online', () => { times.push(now() - t0); x.kill(); });
    x.on('exit', one);
  };
  one();
});

# Summarises bench/run.sh's raw rows (tab-separated, one per run) as
# markdown: per worker count and route, the median of each figure over the
# rounds, the ratios luacluster/node and luacluster/nginx, then every run.
# Fields: workers route round peer status startup_ms requests rps p50_ms
# p99_ms errors cpu_ticks cpu_us_per_req nworkers rss_worker_kb
# rss_primary_kb lt_rps lt_mean_ms framing note sys_ticks other_load_pct
# redis_ticks (the database's CPU during the run: redis-server's for
# /redis, every postgres process's for /pg; empty otherwise). -v hz=N: clock ticks per second (default 100).
BEGIN { FS = "\t"; if (hz == "") hz = 100 }

{
  row[NR] = $0
  cfg = $1 SUBSEP $2
  if (!(cfg in seen_cfg)) { seen_cfg[cfg] = 1; cfgs[++ncfg] = cfg }
  if (!($4 in seen_peer)) { seen_peer[$4] = 1; peers[++npeer] = $4 }
  k = cfg SUBSEP $4
  if ($5 != "ok") { failed[k]++; next }
  n = ++count[k]
  for (f = 6; f <= 18; f++) val[k, f, n] = $f
  val[k, 21, n] = $12 > 0 ? 100 * $21 / $12 : ""
  val[k, 22, n] = $22
  if ($23 != "" && $7 > 0) {
    val[k, 23, n] = $23 * 1e6 / hz / $7
    has_redis[cfg] = 1
  }
  if ($11 + 0 > 0) errors[k] += $11
  if ($19 != "") framing[k] = $19
  if ($20 != "") notes[k] = notes[k] (notes[k] == "" ? "" : ",") $20
}

# Median of val[k, f, 1..count[k]], ignoring empty values; "" if none.
function median(k, f,    a, m, i, j, t) {
  m = 0
  for (i = 1; i <= count[k]; i++)
    if (val[k, f, i] != "") a[++m] = val[k, f, i] + 0
  if (m == 0) return ""
  for (i = 2; i <= m; i++)             # insertion sort; m is tiny
    for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
      t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
    }
  return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}

# (max - min) / median of field f, in percent.
function spread(k, f,    i, lo, hi, v, md) {
  md = median(k, f)
  if (md == "" || md == 0 || count[k] < 2) return "-"
  lo = hi = val[k, f, 1] + 0
  for (i = 2; i <= count[k]; i++) {
    v = val[k, f, i] + 0
    if (v < lo) lo = v
    if (v > hi) hi = v
  }
  return sprintf("%.0f%%", 100 * (hi - lo) / md)
}

function fmt(v, spec) { return v == "" ? "-" : sprintf(spec, v) }

function ratio(a, b) {
  return (a == "" || b == "" || b == 0) ? "n/a" : sprintf("%.2fx", a / b)
}

END {
  print "## Summary (medians over rounds)"
  print ""
  print "req/s, latency: wrk -t1 -cN --latency, pinned to one core, keep-alive."
  print "CPU/req: utime+stime of all the server's processes during the wrk"
  print "run, divided by the requests wrk counted (lower is better)."
  print "RSS: per worker after the run; primary separately. loadtest: the"
  print "article's tool, a new connection per request, on / only."
  print "other load: CPU used by anything but the server and wrk during the"
  print "run, in % of the machine (other programs, steal): above ~10%, noise."
  for (c = 1; c <= ncfg; c++) {
    split(cfgs[c], kv, SUBSEP)
    print ""
    # /order is the one route that wrk POSTs to (bench/wrk/order.lua).
    print "### WORKERS=" kv[1] ", " (kv[2] == "/order" ? "POST " : "GET ") \
      kv[2]
    if (kv[2] == "/order")
      print "\n_A ~440-byte JSON order POSTed; the handler reads the whole" \
        " body, decodes it, totals qty * price and answers a small JSON._"
    if (kv[2] == "/redis")
      print "\n_One Redis GET per request through a pooled connection; the" \
        " redis-server's own CPU is left out of CPU us/req and shown" \
        " apart as redis us/req._"
    if (kv[2] == "/pg")
      print "\n_One PostgreSQL row by primary key per request through each" \
        " worker's pool; postgres' own CPU (every backend) is left out of" \
        " CPU us/req and shown apart as db us/req._"
    if (kv[2] == "/cpu")
      print "\n_Unreliable: an empty loop measures how each JIT treats an" \
        " empty loop (it may shrink it or drop it), not the server;" \
        " /work is the comparable figure._"
    print ""
    rc = cfgs[c] in has_redis
    print "| server | req/s | spread | p50 ms | p99 ms | CPU us/req |" \
      (rc ? (kv[2] == "/pg" ? " db us/req |" : " redis us/req |") : "") \
      " sys % | RSS/worker MB | primary MB | startup ms | loadtest req/s |" \
      " loadtest mean ms | other load % | errors | runs |"
    print "|---|---:|---:|---:|---:|---:|" (rc ? "---:|" : "") \
      "---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for (p = 1; p <= npeer; p++) {
      k = cfgs[c] SUBSEP peers[p]
      if (!(k in count) && !(k in failed)) continue
      rps[peers[p]] = median(k, 8)
      cpu[peers[p]] = median(k, 13)
      extra = ""
      if (failed[k]) extra = extra ", " failed[k] " failed"
      if (notes[k] != "") extra = extra ", " notes[k]
      printf "| %s | %s | %s | %s | %s | %s |%s %s | %s | %s | %s | %s | %s |" \
        " %s | %d | %d%s |\n", peers[p], fmt(rps[peers[p]], "%.0f"), spread(k, 8),
        fmt(median(k, 9), "%.2f"), fmt(median(k, 10), "%.2f"),
        fmt(cpu[peers[p]], "%.1f"),
        (rc ? " " fmt(median(k, 23), "%.1f") " |" : ""),
        fmt(median(k, 21), "%.0f"),
        fmt(median(k, 15) == "" ? "" : median(k, 15) / 1024, "%.1f"),
        fmt(median(k, 16) == "" ? "" : median(k, 16) / 1024, "%.1f"),
        fmt(median(k, 6), "%.0f"), fmt(median(k, 17), "%.0f"),
        fmt(median(k, 18), "%.1f"), fmt(median(k, 22), "%.0f"), errors[k],
        count[k], extra
    }
    if (("luacluster" in rps) && rps["luacluster"] != "") {
      print ""
      for (p = 1; p <= npeer; p++) {
        o = peers[p]
        if (o == "luacluster" || !(o in rps)) continue
        printf "- luacluster/%s: req/s %s (higher is better), CPU per" \
          " request %s (lower is better)\n", o, ratio(rps["luacluster"], rps[o]),
          ratio(cpu["luacluster"], cpu[o])
      }
    }
    delete rps
    delete cpu
  }

  print ""
  print "## Raw runs"
  print ""
  print "| workers | route | round | server | status | startup ms | requests" \
    " | req/s | p50 ms | p99 ms | errors | CPU ticks | CPU us/req | workers" \
    " seen | RSS/worker kB | primary kB | loadtest req/s | loadtest mean ms" \
    " | framing | note | sys ticks | other load % | redis ticks |"
  print "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" \
    "---:|---:|---:|---:|---|---|---:|---:|---:|"
  for (i = 1; i <= NR; i++) {
    nf = split(row[i], r, "\t")
    line = "|"
    for (f = 1; f <= 23; f++) line = line " " (f <= nf ? r[f] : "") " |"
    print line
  }
}

-- require('pg') against a real PostgreSQL (spec/pg_server.lua: initdb in a
-- temp dir, a unix socket there and 127.0.0.1 on a free port, stopped by
-- PID after).
local h = require('helper')
local uv = require('uv')
local co = require('co')
local cjson = require('cjson')
local PgServer = require('pg_server')

local go = h.go

describe('pg', function()
  local pg, srv, db

  setup(function()
    pg = require('pg')
    srv = PgServer.start()
    db = pg.pool({connectionString = srv.url, max = 5})
  end)

  teardown(function()
    if db then db:close() end
    if srv then srv:stop() end
    h.close_servers()
    h.cleanup()
  end)

  it('says which package to install when libpq cannot be loaded',
    function()
    local p = h.run({'-e', "require('pg')"}, {env = {
      LUACLUSTER_LIBPQ = '/nonexistent/libpq.so.5'}})
    assert.equal(1, p.code)
    assert.matches("pg: libpq could not be loaded %(install Debian's " ..
      'libpq5 package%): /nonexistent/libpq.so.5', p.stderr)
  end)

  describe('values', function()
    it('maps the basic types to Lua values', function()
      local res, err = go(function()
        return db:query([[SELECT 1::int2 AS i2, '-2147483648'::int4 AS i4,
          9007199254740992::int8 AS exact, 9007199254740993::int8 AS big,
          '-9223372036854775808'::int8 AS most_negative, 1.5::float4 AS f4,
          'NaN'::float8 AS nan, '-Infinity'::float8 AS ninf,
          12345678901234567890.123::numeric AS num, true AS t, false AS f,
          'héllo'::text AS txt, 'x'::varchar(3) AS vc, NULL::int AS nothing,
          '\x00ff0a'::bytea AS bin, '2024-02-29'::date AS d,
          '2024-02-29 13:14:15.5'::timestamp AS ts,
          '2024-02-29 13:14:15+02'::timestamptz AS tstz,
          '12:00'::time AS tm, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid
          AS id, '1 day'::interval AS iv]])
      end)
      assert.is_nil(err)
      local r = res.rows[1]
      assert.equal(1, r.i2)
      assert.equal(-2147483648, r.i4)
      assert.equal(2 ^ 53, r.exact)
      assert.equal('9007199254740993', r.big)
      assert.equal('-9223372036854775808', r.most_negative)
      assert.equal(1.5, r.f4)
      assert.is_true(r.nan ~= r.nan)
      assert.equal(-math.huge, r.ninf)
      assert.equal('12345678901234567890.123', r.num)
      assert.is_true(r.t)
      assert.is_false(r.f)
      assert.equal('héllo', r.txt)
      assert.equal('x', r.vc)
      assert.equal(pg.null, r.nothing)
      assert.equal(cjson.null, pg.null)
      assert.equal('\0\255\n', r.bin)
      assert.equal('2024-02-29', r.d)
      assert.equal('2024-02-29T13:14:15.5', r.ts)
      -- The server's TimeZone (initdb's: the machine's, here UTC or not).
      assert.matches('^2024%-02%-29T%d%d:14:15', r.tstz)
      assert.matches('[Z%d]$', r.tstz)
      assert.equal('12:00:00', r.tm)
      assert.equal('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', r.id)
      assert.equal('1 day', r.iv)
      assert.equal('SELECT', res.command)
      assert.equal(1, res.rowCount)
      assert.equal(21, #res.fields)
      assert.equal('i2', res.fields[1].name)
      assert.equal(21, res.fields[1].dataTypeID)
    end)

    it('decodes json and jsonb, and arrays of the basic types', function()
      local res = assert(go(function()
        return db:query([=[SELECT '{"a":[1,2,{"b":null}],"s":"x"}'::json AS j,
          '[true, 2.5, "z"]'::jsonb AS jb, 'null'::jsonb AS jnull,
          ARRAY[1,NULL,3] AS ints, ARRAY['a,b', 'c"d', 'e\f', 'NULL', '']
          AS texts, ARRAY[[1,2],[3,4]] AS matrix, '{}'::int[] AS empty,
          ARRAY[true,false] AS bools, ARRAY[1.5::float8] AS floats,
          ARRAY[9007199254740993::int8, 1] AS bigs,
          ARRAY['\x01'::bytea] AS bins, ARRAY[1.10::numeric] AS nums,
          ARRAY['{"k":1}'::jsonb] AS jsons,
          '[0:1]={7,8}'::int[] AS shifted]=])
      end))
      local r = res.rows[1]
      assert.same({a = {1, 2, {b = pg.null}}, s = 'x'}, r.j)
      assert.same({true, 2.5, 'z'}, r.jb)
      assert.equal(pg.null, r.jnull)
      assert.same({1, pg.null, 3}, r.ints)
      assert.same({'a,b', 'c"d', 'e\\f', 'NULL', ''}, r.texts)
      assert.same({{1, 2}, {3, 4}}, r.matrix)
      assert.same({}, r.empty)
      assert.same({true, false}, r.bools)
      assert.same({1.5}, r.floats)
      assert.same({'9007199254740993', 1}, r.bigs)
      assert.same({'\1'}, r.bins)
      assert.same({'1.10'}, r.nums)
      assert.same({{k = 1}}, r.jsons)
      assert.same({7, 8}, r.shifted)
      -- NULL encodes as JSON null.
      assert.equal('[1,null,3]', cjson.encode(r.ints))
    end)

    it('sends parameters of every kind and gets them back', function()
      local res = assert(go(function()
        return db:query([[SELECT $1::int AS n, $2::float8 AS f,
          $3::text AS s, $4::bool AS b, $5::int AS null1, $6::text AS null2,
          $7::jsonb AS obj, $8::int[] AS list, $9::bytea AS bin,
          $10::text[] AS strs, $11::jsonb AS seq, $12::int8 AS big,
          $13::float8 AS inf]], 42, 0.1, 'text', false, nil, pg.null,
          {a = {b = 1}}, {1, 2, 3}, pg.bytea('\0\1\2\255'),
          {'x', 'y,z', 'q"uote', 'back\\slash'}, pg.json({1, 'two'}),
          2 ^ 53, math.huge)
      end))
      local r = res.rows[1]
      assert.equal(42, r.n)
      assert.equal(0.1, r.f)
      assert.equal('text', r.s)
      assert.is_false(r.b)
      assert.equal(pg.null, r.null1)
      assert.equal(pg.null, r.null2)
      assert.same({a = {b = 1}}, r.obj)
      assert.same({1, 2, 3}, r.list)
      assert.equal('\0\1\2\255', r.bin)
      assert.same({'x', 'y,z', 'q"uote', 'back\\slash'}, r.strs)
      assert.same({1, 'two'}, r.seq)
      assert.equal(2 ^ 53, r.big)
      assert.equal(math.huge, r.inf)
    end)

    it('keeps injection attempts as data', function()
      local out = {go(function()
        assert(db:query('CREATE TABLE IF NOT EXISTS people (id serial ' ..
          'PRIMARY KEY, name text)'))
        local evil = {"'; DROP TABLE people; --", "x' OR '1'='1",
          'Robert"); DROP TABLE people;--', '$1', '\\', "' || pg_sleep(5) --"}
        for _, name in ipairs(evil) do
          assert(db:query('INSERT INTO people (name) VALUES ($1)', name))
        end
        local count = 'SELECT count(*)::int AS n FROM people WHERE name = $1'
        local found = assert(db:query(count, "x' OR '1'='1"))
        local all = assert(db:query('SELECT name FROM people ORDER BY id'))
        local none = assert(db:query(count, "' OR 1=1 --"))
        return evil, found.rows[1].n, all.rows, none.rows[1].n
      end)}
      assert.equal(1, out[2])
      assert.equal(#out[1], #out[3])
      for i, name in ipairs(out[1]) do assert.equal(name, out[3][i].name) end
      assert.equal(0, out[4])
    end)

    it('raises on a text parameter holding a NUL byte', function()
      local ok, err = go(function()
        return pcall(db.query, db, 'SELECT $1::text', 'a\0b')
      end)
      assert.is_false(ok)
      assert.matches('parameter %$1: holds a NUL byte', err)
      -- As bytea it goes whole.
      local r = go(function()
        return assert(db:query('SELECT $1::bytea AS b', pg.bytea('a\0b')))
      end)
      assert.equal('a\0b', r.rows[1].b)
    end)

    it('raises on a parameter that has no SQL form', function()
      local ok, err = go(function()
        return pcall(db.query, db, 'SELECT $1', function() end, 1)
      end)
      assert.is_false(ok)
      assert.matches('parameter %$1: a function has no PostgreSQL form', err)
    end)
  end)

  describe('errors', function()
    it('returns bad SQL as an error with its SQLSTATE', function()
      local out = {go(function()
        local r1, e1 = db:query('SELEC 1')
        local r2, e2 = db:query('SELECT * FROM no_such_table')
        local _, e3 = db:query('SELECT 1/0')
        assert(db:query('CREATE TABLE IF NOT EXISTS uniq (k int PRIMARY KEY)'))
        assert(db:query('INSERT INTO uniq VALUES (1) ON CONFLICT DO NOTHING'))
        local _, e4 = db:query('INSERT INTO uniq VALUES ($1)', 1)
        local after = assert(db:query('SELECT 2 AS two'))
        return r1, e1, r2, e2, e3, e4, after.rows[1].two
      end)}
      assert.is_nil(out[1])
      assert.equal('42601', out[2].code)
      assert.equal('ERROR', out[2].severity)
      assert.matches('syntax error', out[2].message)
      assert.equal('1', out[2].position)
      assert.matches('syntax error', tostring(out[2]))
      assert.is_nil(out[3])
      assert.equal('42P01', out[4].code)
      assert.equal('22012', out[5].code)
      assert.equal('23505', out[6].code)
      assert.equal('uniq_pkey', out[6].constraint)
      assert.matches('already exists', out[6].detail)
      assert.equal(2, out[7])
    end)

    it("emits the server's notices as 'notice', before the result",
      function()
      local out = {go(function()
        local c = assert(pg.connect(srv.url))
        local seen = {}
        c:on('notice', function(n) seen[#seen + 1] = n end)
        local r = assert(c:query([[DO $$ BEGIN
          RAISE NOTICE 'first %', 1; RAISE WARNING 'second';
        END $$]]))
        local before = #seen
        c:close()
        return before, seen, r.command
      end)}
      assert.equal(2, out[1])
      assert.equal('first 1', out[2][1].message)
      assert.equal('NOTICE', out[2][1].severity)
      assert.equal('00000', out[2][1].code)
      assert.equal('second', out[2][2].message)
      assert.equal('WARNING', out[2][2].severity)
      assert.equal('DO', out[3])
    end)

    it('returns a result a statement for several in one query', function()
      local out = {go(function()
        local r = assert(db:query([[CREATE TEMP TABLE multi (n int);
          INSERT INTO multi VALUES (1), (2); SELECT sum(n) AS s FROM multi;
          SELECT 'x' AS a, 'y' AS b]]))
        local one = assert(db:query('SELECT 5 AS five'))
        local bad, err = db:query('SELECT 1 AS ok; SELECT 1/0; SELECT 3')
        return r, one, bad, err
      end)}
      local r = out[1]
      assert.equal(4, #r)
      assert.equal('CREATE', r[1].command)
      assert.equal('INSERT', r[2].command)
      assert.equal(2, r[2].rowCount)
      assert.equal(3, r[3].rows[1].s)
      assert.same({a = 'x', b = 'y'}, r[4].rows[1])
      -- The last one's fields on the list too.
      assert.equal(r[4].rows, r.rows)
      assert.equal('SELECT', r.command)
      -- One statement: one result, no list.
      assert.is_nil(out[2][1])
      assert.equal(5, out[2].rows[1].five)
      -- An error stops the rest, as PostgreSQL does.
      assert.is_nil(out[3])
      assert.equal('22012', out[4].code)
    end)

    it('copies rows in (COPY FROM STDIN) and out (COPY TO STDOUT)',
      function()
      local out = {go(function()
        local c = assert(pg.connect(srv.url))
        assert(c:query('CREATE TEMP TABLE cp (id int, name text)'))
        local r1 = assert(c:copyFrom('COPY cp FROM STDIN',
          {'1\tone\n', '2\ttwo\n'}))
        local r2 = assert(c:copyFrom('COPY cp FROM STDIN (FORMAT csv)',
          '3,"th,ree"\n4,four\n'))
        -- Past libpq's buffers: 20,000 rows in one string.
        local big = {}
        for i = 5, 20004 do big[#big + 1] = i .. '\trow ' .. i .. '\n' end
        local r3 = assert(c:copyFrom('COPY cp FROM STDIN', table.concat(big)))
        local n = assert(c:query('SELECT count(*)::int AS n FROM cp'))
        local t1 = assert(c:copyTo('COPY (SELECT id, name FROM cp WHERE '
          .. 'id <= 4 ORDER BY id) TO STDOUT (FORMAT csv)'))
        local t2 = assert(c:query('COPY cp TO STDOUT'))
        -- Bad data: the statement fails, the connection goes on.
        local bad, berr = c:copyFrom('COPY cp FROM STDIN', 'x\ty\n')
        local none, nerr = c:query('COPY cp FROM STDIN')
        local after = assert(c:query('SELECT 2 AS two'))
        c:close()
        return r1, r2, r3, n.rows[1].n, t1, t2, bad, berr, none, nerr,
          after.rows[1].two
      end, 20000)}
      assert.equal('COPY', out[1].command)
      assert.equal(2, out[1].rowCount)
      assert.equal(2, out[2].rowCount)
      assert.equal(20000, out[3].rowCount)
      assert.equal(20004, out[4])
      assert.equal('1,one\n2,two\n3,"th,ree"\n4,four\n', out[5].data)
      assert.equal(4, out[5].rowCount)
      assert.equal(20004, select(2, out[6].data:gsub('\n', '')))
      assert.matches('\n20004\trow 20004\n$', out[6].data)
      assert.is_nil(out[7])
      assert.equal('22P02', out[8].code)
      assert.is_nil(out[9])
      assert.equal('57014', out[10].code)
      assert.matches('copyFrom', out[10].message)
      assert.equal(2, out[11])
    end)

    it("copies through the pool, and with a callback", function()
      assert(go(function()
        return db:query('CREATE TABLE IF NOT EXISTS cp_pool (v text)')
      end))
      local r = go(function()
        return db:copyFrom('COPY cp_pool FROM STDIN', {'a\n', 'b\n'})
      end)
      assert.equal(2, r.rowCount)
      local got
      db:copyFrom('COPY cp_pool FROM STDIN', 'c\n', function(err, res)
        got = {err, res}
      end)
      assert.is_true(h.wait(function() return got end, 5000))
      assert.is_nil(got[1])
      assert.equal(1, got[2].rowCount)
      local t = go(function()
        return db:copyTo('COPY (SELECT v FROM cp_pool ORDER BY v) TO STDOUT')
      end)
      assert.equal('a\nb\nc\n', t.data)
      assert(go(function() return db:query('DROP TABLE cp_pool') end))
      local ok, err = pcall(db.copyFrom, db, 'COPY x FROM STDIN', 42)
      assert.is_false(ok)
      assert.matches('pool:copyFrom: data must be a string or a list of '
        .. 'strings, got number', err, 1, true)
    end)

    it('refuses a query outside a coroutine without a callback', function()
      local ok, err = pcall(db.query, db, 'SELECT 1')
      assert.is_false(ok)
      assert.matches('pool:query: not inside a coroutine', err)
    end)

    it('fails to connect with a clear error', function()
      local c, err = go(function()
        return pg.connect('postgresql://postgres@127.0.0.1:' ..
          h.free_port() .. '/postgres')
      end)
      assert.is_nil(c)
      assert.equal('08001', err.code)
      assert.matches('refused', err.message)
    end)
  end)

  describe('host names', function()
    local resolve = function(info)
      return go(function() return co.await(require('pg.resolve').resolve,
        info) end)
    end

    it('are looked up before libpq connects, into hostaddr', function()
      -- libpq then never resolves (its getaddrinfo would block the worker).
      local info = resolve('postgresql://postgres@localhost:' .. srv.port ..
        '/postgres')
      assert.matches("host='localhost[,localhost]*'", info)
      assert.matches("hostaddr='[^']*127%.0%.0%.1", info)
      -- One port stays one, however many addresses localhost has.
      assert.matches("port='" .. srv.port .. "'", info)
      assert.matches("user='postgres'", info)
      -- Nothing to look up: the string as it was.
      assert.equal(srv.url, resolve(srv.url))
      local plain = 'host=127.0.0.1 port=5432'
      assert.equal(plain, resolve(plain))
      assert.equal('host=db hostaddr=10.0.0.1',
        resolve('host=db hostaddr=10.0.0.1'))
      -- A list of hosts keeps one port a host.
      local two = resolve('host=localhost,' .. srv.dir .. ' port=1,2')
      local hosts = two:match("host='([^']*)'")
      local ports = two:match("port='([^']*)'")
      local n = select(2, hosts:gsub(',', ',')) + 1
      assert.equal(n, select(2, ports:gsub(',', ',')) + 1)
      assert.matches(',2$', ports)
      assert.matches(srv.dir:gsub('%p', '%%%0') .. '$', hosts)
    end)

    it('connect by name; a name that does not resolve is skipped or named',
      function()
      local out = {go(function()
        local c = assert(pg.connect('postgresql://postgres@localhost:' ..
          srv.port .. '/postgres'))
        local r = assert(c:query('SELECT inet_server_addr()::text AS a'))
        c:close()
        local c2 = assert(pg.connect('host=nonexistent.invalid,localhost ' ..
          'port=' .. srv.port .. ' user=postgres dbname=postgres'))
        local r2 = assert(c2:query('SELECT 7 AS n'))
        c2:close()
        local c3, err = pg.connect('postgresql://postgres@nonexistent.' ..
          'invalid:' .. srv.port .. '/postgres')
        return r.rows[1].a, r2.rows[1].n, c3, err
      end)}
      assert.equal('127.0.0.1/32', out[1])
      assert.equal(7, out[2])
      assert.is_nil(out[3])
      assert.equal('08001', out[4].code)
      assert.matches('could not translate host name "nonexistent.invalid"',
        out[4].message, 1, true)
    end)
  end)

  describe('callbacks', function()
    it('answers cb(err, res) outside a coroutine', function()
      local got, bad
      db:query('SELECT $1::int + 1 AS n', 41, function(err, res)
        got = {err, res}
      end)
      db:query('SELECT nope', function(err, res) bad = {err, res} end)
      assert.is_true(h.wait(function() return got and bad end, 5000))
      assert.is_nil(got[1])
      assert.equal(42, got[2].rows[1].n)
      assert.equal('42703', bad[1].code)
      assert.is_nil(bad[2])
    end)

    it('connects with libpq keywords in a table', function()
      local info = pg.conninfo({host = srv.dir, port = srv.port,
        user = 'postgres', database = 'postgres', application_name = "it's"})
      assert.equal("application_name='it\\'s' dbname='postgres' host='" ..
        srv.dir .. "' port='" .. srv.port .. "' user='postgres'", info)
      local name = go(function()
        local c = assert(pg.connect({host = srv.dir, port = srv.port,
          user = 'postgres', database = 'postgres',
          application_name = "it's"}))
        local r = assert(c:query('SHOW application_name'))
        c:close()
        return r.rows[1].application_name
      end)
      assert.equal("it's", name)
    end)

    it('connects and queries a client of its own', function()
      local done
      pg.connect(srv.tcp_url, function(err, c)
        assert.is_nil(err)
        c:query('SELECT current_user AS u', function(qerr, res)
          done = {qerr, res and res.rows[1].u}
          c:close()
        end)
      end)
      assert.is_true(h.wait(function() return done end, 5000))
      assert.same({nil, 'postgres'}, {done[1], done[2]})
    end)
  end)

  describe('transactions', function()
    setup(function()
      go(function()
        assert(db:query('CREATE TABLE IF NOT EXISTS accounts ' ..
          '(id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))'))
        assert(db:query('INSERT INTO accounts VALUES (1, 100), (2, 0) ' ..
          'ON CONFLICT DO NOTHING'))
      end)
    end)

    local function balances()
      local r = assert(db:query('SELECT balance FROM accounts ORDER BY id'))
      return {r.rows[1].balance, r.rows[2].balance}
    end

    -- must(res, err): res, or raises err itself (not its text).
    local function must(res, err)
      if res == nil then error(err, 0) end
      return res
    end

    local function move(c, amount)
      must(c:query('UPDATE accounts SET balance = balance + $1 ' ..
        'WHERE id = 2', amount))
      must(c:query('UPDATE accounts SET balance = balance - $1 ' ..
        'WHERE id = 1', amount))
      return 'moved', amount
    end

    it('commits when fn returns', function()
      local out = {go(function()
        local a, b = db:transaction(function(c) return move(c, 30) end)
        return a, b, balances()
      end)}
      assert.equal('moved', out[1])
      assert.equal(30, out[2])
      assert.same({70, 30}, out[3])
    end)

    it('rolls back when fn raises', function()
      local out = {go(function()
        local r, err = db:transaction(function(c) return move(c, 500) end)
        return r, err, balances(), db.idleCount, db.totalCount
      end)}
      assert.is_nil(out[1])
      assert.equal('23514', out[2].code) -- the CHECK constraint
      assert.same({70, 30}, out[3])
    end)

    it('rolls back a statement that failed though fn caught it', function()
      local out = {go(function()
        local r, err = db:transaction(function(c)
          assert(c:query('UPDATE accounts SET balance = 0 WHERE id = 1'))
          local _, e = c:query('SELECT 1/0')
          return 'carried on', e
        end)
        return r, err, balances()
      end)}
      assert.is_nil(out[1])
      assert.equal('22012', out[2].code)
      assert.same({70, 30}, out[3])
    end)

    it('pins one connection for the whole transaction', function()
      local pids = go(function()
        return db:transaction(function(c)
          local seen = {}
          for i = 1, 3 do
            seen[i] = assert(c:query('SELECT pg_backend_pid() AS p')).rows[1].p
          end
          return seen
        end)
      end)
      assert.equal(pids[1], pids[2])
      assert.equal(pids[1], pids[3])
    end)
  end)

  describe('the pool', function()
    it('never opens more than max connections, and queues', function()
      local small = pg.pool({connectionString = srv.url, max = 2})
      local out = {go(function()
        local most = 0
        local ts = {}
        local t0 = uv.hrtime()
        for i = 1, 6 do
          ts[i] = co.spawn(function()
            local r = assert(small:query('SELECT pg_sleep(0.2), ' ..
              '$1::int AS i', i))
            if small.totalCount > most then most = small.totalCount end
            return r.rows[1].i
          end)
        end
        local waiting = small.waitingCount
        local got = {}
        for i, r in ipairs(co.all(unpack(ts))) do
          assert(r[1], r[2])
          got[i] = r[2]
        end
        return most, waiting, got, (uv.hrtime() - t0) / 1e9, small.idleCount
      end)}
      small:close()
      assert.equal(2, out[1])
      assert.equal(4, out[2])
      assert.same({1, 2, 3, 4, 5, 6}, out[3])
      assert.is_true(out[4] >= 0.55, 'six 0.2 s queries on two: ' .. out[4])
      assert.equal(2, out[5])
    end)

    it('gives up waiting after connectionTimeoutMillis', function()
      local one = pg.pool({connectionString = srv.url, max = 1,
        connectionTimeoutMillis = 200})
      local out = {go(function()
        local holder = co.spawn(function()
          return one:query('SELECT pg_sleep(1)')
        end)
        local t0 = uv.hrtime()
        local r, err = one:query('SELECT 1')
        local waited = (uv.hrtime() - t0) / 1e6
        local ok = co.wait(holder)
        return r, err, waited, ok
      end)}
      one:close()
      assert.is_nil(out[1])
      assert.equal('timeout exceeded when trying to connect', out[2].message)
      assert.is_true(out[3] >= 150 and out[3] < 900, 'waited ' .. out[3])
      assert.is_true(out[4])
    end)

    it('refuses past maxQueue waiters', function()
      local one = pg.pool({connectionString = srv.url, max = 1, maxQueue = 1})
      local out = {go(function()
        local a = co.spawn(function()
          return one:query('SELECT pg_sleep(0.3)')
        end)
        local b = co.spawn(function() return one:query('SELECT 2 AS two') end)
        local r, err = one:query('SELECT 3')
        local _, ra = co.wait(a)
        local _, rb = co.wait(b)
        return r, err, ra and ra.command, rb and rb.rows[1].two
      end)}
      one:close()
      assert.is_nil(out[1])
      assert.matches('queue is full', out[2].message)
      assert.equal('SELECT', out[3])
      assert.equal(2, out[4])
    end)

    it('reuses connections and prepares a statement once each', function()
      local one = pg.pool({connectionString = srv.url, max = 1})
      local out = {go(function()
        local pids = {}
        for i = 1, 3 do
          pids[i] = assert(one:query('SELECT pg_backend_pid() AS p, $1::int ' ..
            'AS i', i)).rows[1].p
        end
        local prep = assert(one:query('SELECT count(*)::int AS n FROM ' ..
          'pg_prepared_statements'))
        return pids, prep.rows[1].n
      end)}
      one:close()
      assert.equal(out[1][1], out[1][2])
      assert.equal(out[1][1], out[1][3])
      assert.equal(1, out[2])
    end)

    it('replaces a connection older than maxLifetimeSeconds', function()
      local p = pg.pool({connectionString = srv.url, max = 1,
        maxLifetimeSeconds = 0.3})
      local a, b, c = go(function()
        local q = 'SELECT pg_backend_pid() AS p'
        local a = assert(p:query(q)).rows[1].p
        local b = assert(p:query(q)).rows[1].p
        co.sleep(400)
        return a, b, assert(p:query(q)).rows[1].p
      end)
      p:close()
      assert.equal(a, b)
      assert.are_not.equal(a, c)
    end)

    it('lets a script end while its connections idle', function()
      local src = ([[
        local pg = require('pg')
        local db = pg.pool(%q)
        require('co').spawn(function()
          print(assert(db:query('SELECT 40 + 2 AS n')).rows[1].n)
        end)
      ]]):format(srv.url)
      local t0 = uv.hrtime()
      local p = h.run({h.tmpfile(src, '.lua')})
      local took = (uv.hrtime() - t0) / 1e9
      assert.equal(0, p.code, p.stderr)
      assert.equal('42\n', p.stdout)
      -- Not after idleTimeoutMillis (10 s).
      assert.is_true(took < 5, 'took ' .. took)
    end)

    it('closes idle connections after idleTimeoutMillis', function()
      local p = pg.pool({connectionString = srv.url, max = 3,
        idleTimeoutMillis = 100})
      go(function()
        local ts = {}
        for i = 1, 3 do
          ts[i] = co.spawn(function()
            return p:query('SELECT pg_sleep(0.05)')
          end)
        end
        co.all(unpack(ts))
      end)
      assert.equal(3, p.idleCount)
      assert.is_true(h.wait(function() return p.totalCount == 0 end, 3000))
      p:close()
    end)
  end)

  describe('a query that takes too long', function()
    it('is cancelled on the server after its timeout', function()
      local out = {go(function()
        local c = assert(pg.connect(srv.url))
        local t0 = uv.hrtime()
        local r, err = c:query({text = 'SELECT pg_sleep(10)', timeout = 200})
        local took = (uv.hrtime() - t0) / 1e9
        -- The same connection goes on.
        local after = assert(c:query('SELECT 1 AS one'))
        local running = assert(db:query("SELECT count(*)::int AS n FROM " ..
          "pg_stat_activity WHERE query = 'SELECT pg_sleep(10)' AND " ..
          "state = 'active'"))
        c:close()
        return r, err, took, after.rows[1].one, running.rows[1].n
      end, 10000)}
      assert.is_nil(out[1])
      assert.equal('57014', out[2].code)
      assert.is_true(out[2].timeout)
      assert.matches('query timeout %(200 ms%)', out[2].message)
      assert.is_true(out[3] < 3, 'took ' .. out[3])
      assert.equal(1, out[4])
      assert.equal(0, out[5])
    end)

    it('takes the pool\'s query_timeout as the default', function()
      local p = pg.pool({connectionString = srv.url, query_timeout = 100})
      local r, err = go(function() return p:query('SELECT pg_sleep(5)') end)
      p:close()
      assert.is_nil(r)
      assert.equal('57014', err.code)
    end)
  end)

  describe('LISTEN/NOTIFY', function()
    it('delivers a notification from one connection to another', function()
      local out = {go(function()
        local a = assert(pg.connect(srv.url))
        local b = assert(pg.connect(srv.tcp_url))
        local got = {}
        a:on('notification', function(msg) got[#got + 1] = msg end)
        assert(a:query('LISTEN jobs'))
        assert(b:query("SELECT pg_notify('jobs', 'first')"))
        assert(b:query('NOTIFY jobs, \'second\''))
        assert(b:query("SELECT pg_notify('other', 'not for a')"))
        for _ = 1, 100 do
          if #got >= 2 then break end
          co.sleep(10)
        end
        local bpid = b.processID
        a:close()
        b:close()
        return got, bpid
      end)}
      local got = out[1]
      assert.equal(2, #got)
      assert.same({channel = 'jobs', payload = 'first', processId = out[2]},
        got[1])
      assert.equal('second', got[2].payload)
    end)

    it('pool:listen keeps a listening connection; pool:notify', function()
      local p = pg.pool({connectionString = srv.url})
      local got = {}
      p:listen('news', function(msg) got[#got + 1] = msg.payload end)
      p:listen('we"ird', function(msg) got[#got + 1] = 'w:' .. msg.payload end)
      assert.is_true(h.wait(function()
        return p.lclient and p.lclient.state == 'ready'
          and not p.lclient:busy()
      end, 5000))
      go(function()
        assert(p:notify('news', 'hello'))
        assert(db:query("SELECT pg_notify('we\"ird', 'odd')"))
      end)
      assert.is_true(h.wait(function() return #got == 2 end, 3000))
      assert.same({'hello', 'w:odd'}, got)
      p:close()
    end)
  end)

  describe('in a server', function()
    -- The app: one process (one worker), a pool of 20.
    local APP = [[
      local http = require('http')
      local pg = require('pg')
      local db = pg.pool({max = 20})
      http.createServer(function(req, res)
        if req.url == '/ping' then return res:finish('pong') end
        local r, err
        if req.url == '/sleep' then
          r, err = db:query('SELECT pg_sleep(0.5)')
        else
          r, err = db:query('SELECT $1::int + 1 AS n', 41)
        end
        if not r then
          res:writeHead(500)
          return res:finish(err.code .. ' ' .. err.message)
        end
        res:finish(tostring(r.rows[1].n or 'slept'))
      end):listen(tonumber(os.getenv('PORT')), '127.0.0.1', function()
        print('listening')
      end)
    ]]

    -- fire(port, path) -> a record whose `status` and `at` (seconds since
    -- t0) are set when the response has come; sent at once.
    local function fire(port, path, t0)
      local r = {}
      local c = uv.new_tcp()
      local buf = ''
      c:connect('127.0.0.1', port, function(err)
        if err then r.err = err return c:close() end
        c:read_start(function(e, data)
          if data then buf = buf .. data return end
          r.status = tonumber(buf:match('^HTTP/1%.1 (%d+)')) or e or 'closed'
          r.body = buf:match('\r\n\r\n(.*)$')
          r.at = (uv.hrtime() - t0) / 1e9
          c:close()
        end)
        c:write('GET ' .. path .. ' HTTP/1.1\r\nHost: x\r\n' ..
          'Connection: close\r\n\r\n')
      end)
      return r
    end

    local function start_app()
      local port = h.free_port()
      local app = h.spawn({h.tmpfile(APP, '.lua')}, {env = {
        PORT = tostring(port), DATABASE_URL = srv.url}})
      assert(app:wait_output('listening', 5000), app.stderr)
      return app, port
    end

    it('runs 20 pg_sleep(0.5) at once while /ping answers at once',
      function()
      local app, port = start_app()
      assert.equal(200, (h.get(port, '/one'))) -- the pool is warm
      local t0 = uv.hrtime()
      local sleeps = {}
      for i = 1, 20 do sleeps[i] = fire(port, '/sleep', t0) end
      h.sleep(100)
      local ping = fire(port, '/ping', t0)
      assert.is_true(h.wait(function() return ping.at end, 3000))
      local first_sleep = math.huge
      for _, r in ipairs(sleeps) do
        if r.at and r.at < first_sleep then first_sleep = r.at end
      end
      assert.is_true(h.wait(function()
        for _, r in ipairs(sleeps) do if not r.at then return false end end
        return true
      end, 10000))
      local last = 0
      for _, r in ipairs(sleeps) do
        assert.equal(200, r.status)
        assert.equal('slept', r.body)
        if r.at > last then last = r.at end
      end
      app:stop()
      assert.equal(200, ping.status)
      -- /ping came back before any query did, and soon.
      assert.is_true(ping.at < first_sleep, ('ping at %.3f s, first ' ..
        'sleep at %.3f s'):format(ping.at, first_sleep))
      assert.is_true(ping.at - 0.1 < 0.4, 'ping took ' .. (ping.at - 0.1))
      -- 20 x 0.5 s one after the other would be 10 s.
      assert.is_true(last < 3, 'the 20 sleeps took ' .. last .. ' s')
    end)

    it('gives LISTEN/NOTIFY messages from one worker to another', function()
      local src = [[
        local cluster = require('cluster')
        if cluster.isPrimary then
          cluster.fork()
          cluster.fork()
          return
        end
        local pg = require('pg')
        local db = pg.pool({max = 2})
        local me = cluster.worker.id
        local heard = {}
        db:listen('chat', function(msg)
          if not heard[msg.payload] then
            heard[msg.payload] = true
            print('worker ' .. me .. ' heard ' .. msg.payload)
          end
        end)
        local n = 0
        local timer
        timer = setInterval(function()
          n = n + 1
          if n > 100 then return clearInterval(timer) end
          db:notify('chat', 'hello from worker ' .. me, function() end)
        end, 50)
      ]]
      local p = h.spawn({h.tmpfile(src, '.lua')}, {env = {
        DATABASE_URL = srv.tcp_url}})
      local ok = h.wait(function()
        return p.stdout:find('worker 1 heard hello from worker 2', 1, true)
          and p.stdout:find('worker 2 heard hello from worker 1', 1, true)
      end, 8000)
      p:stop()
      assert.is_truthy(ok, p.stdout .. p.stderr)
    end)

    it('survives the server restarting under load', function()
      local app, port = start_app()
      assert.equal(200, (h.get(port, '/one')))
      local load = h.load(port, {path = '/one', duration = 2500,
        connections = 4})
      h.sleep(500)
      local before = load.ok
      srv:kill()
      h.sleep(300)
      srv:launch()
      assert.is_true(h.wait(function() return load:done() end, 10000))
      local status, body = h.get(port, '/one')
      local alive = not app.exited
      app:stop()
      assert.is_true(before > 0)
      assert.is_true(load.failed > 0, 'no request failed while the ' ..
        'server was down')
      assert.is_true(load.ok > before, 'no request succeeded after the ' ..
        'restart')
      assert.equal(200, status)
      assert.equal('42', body)
      assert.is_true(alive)
    end)

    it('listens again after the server restarts', function()
      local p = pg.pool({connectionString = srv.url})
      local got, listening = {}, 0
      p:on('listening', function() listening = listening + 1 end)
      p:listen('after', function(msg) got[#got + 1] = msg.payload end)
      assert.is_true(h.wait(function() return listening == 1 end, 5000))
      srv:restart()
      assert.is_true(h.wait(function() return listening == 2 end, 10000))
      go(function() assert(db:query("SELECT pg_notify('after', 'back')")) end)
      assert.is_true(h.wait(function() return #got == 1 end, 3000))
      p:close()
      assert.same({'back'}, got)
    end)

    it('fails the query in flight when the server goes, then recovers',
      function()
      local got
      db:query('SELECT pg_sleep(5)', function(err, res) got = {err, res} end)
      h.sleep(300)
      srv:kill()
      assert.is_true(h.wait(function() return got end, 5000))
      srv:launch()
      local err = got[1]
      assert.is_nil(got[2])
      -- libpq's words for a server that went away (an immediate shutdown
      -- first tells the backends to end: 57P01; a crash says 08006).
      assert.is_truthy(err.code == '08006' or err.code == '57P01',
        tostring(err.code))
      assert.matches('terminat', err.message)
      local r = go(function()
        return assert(db:query('SELECT 1 AS one')).rows[1].one
      end)
      assert.equal(1, r)
    end)
  end)
end)

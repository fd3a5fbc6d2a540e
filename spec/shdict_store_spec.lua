-- The shared dict's store without Lua: runtime/shdict/store_test.c, built
-- beside the binary (shdict_store_test), exercises the operations the FFI
-- calls, eviction, validation and recovery from a process killed holding
-- the lock, in C alone.

local h = require('helper')

describe('the shared dict store (C, without Lua)', function()
  it('passes its own checks', function()
    local bin = h.bin:gsub('[^/]+$', 'shdict_store_test')
    local p = h.run({}, {cmd = bin, timeout = 20000})
    assert.equal(0, p.code, p.stdout .. p.stderr)
    local n, failed = p.stdout:match('store_test: (%d+) checks, (%d+) failed')
    assert.truthy(tonumber(n) > 1000, p.stdout)
    assert.equal('0', failed)
  end)
end)

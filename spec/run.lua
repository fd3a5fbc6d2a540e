-- Runs busted's own runner inside luacluster, so specs can require the
-- runtime's modules: build/luacluster spec/run.lua [busted args...]
require('busted.runner')({standalone = false})

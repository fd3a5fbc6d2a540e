-- busted output handler: busted's plain terminal output, then one closing
-- line "N passed, N failed, N skipped" (errors count as failed), so a run
-- that executed no spec is visible.
return function(options)
  local busted = require('busted')
  local handler = require('busted.outputHandlers.plainTerminal')(options)
  busted.subscribe({'suite', 'end'}, function()
    io.write(('\n%d passed, %d failed, %d skipped\n'):format(
      handler.successesCount, handler.failuresCount + handler.errorsCount,
      handler.pendingsCount))
    io.flush()
    return nil, true
  end)
  return handler
end

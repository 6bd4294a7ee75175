-- Random inclusion or consistency proofs (BENCH_LEDGER_PROOF) in a log of BENCH_LEDGER_SIZE
-- entries, as bench/ledger.py's proof_path picks them; public, so no API key.
local common = require("common")
setup = common.setup
init = common.seed
local kind = os.getenv("BENCH_LEDGER_PROOF") or "inclusion"
local size = tonumber(os.getenv("BENCH_LEDGER_SIZE"))

function request()
  local tree = math.random(2, size)
  if kind == "inclusion" then
    return wrk.format("GET", "/ledger/v1/proof/inclusion?index=" .. math.random(0, tree - 1)
                      .. "&size=" .. tree)
  end
  return wrk.format("GET", "/ledger/v1/proof/consistency?from=" .. math.random(1, tree - 1)
                    .. "&to=" .. tree)
end

done = common.done

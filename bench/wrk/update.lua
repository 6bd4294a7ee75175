-- Update one post per request, picked at random, with the service_role key; no body back.
local common = require("common")
setup = common.setup
init = common.seed
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "return=minimal"
common.authorize(os.getenv("BENCH_WRITE_KEY"))

function request()
  local id = math.random(1, common.max_id)
  return wrk.format("PATCH", common.prefix .. "/posts?id=eq." .. id, nil,
                    '{"score":' .. (id % 1000) .. '}')
end

done = common.done

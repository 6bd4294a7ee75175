-- Get one post by primary key; the id is random in 1..BENCH_MAX_ID on every request.
local common = require("common")
common.read("/posts")
setup = common.setup
init = common.seed

function request()
  return wrk.format(nil, common.prefix .. "/posts?id=eq." .. math.random(1, common.max_id)
                    .. "&select=*")
end

done = common.done

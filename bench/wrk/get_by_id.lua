-- Get one post by primary key; the id is random in 1..BENCH_MAX_ID on every request.
local common = require("common")
common.read("/posts")

local threads = 0
function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(4242 + (thread_number or 0))
end

function request()
  return wrk.format(nil, common.prefix .. "/posts?id=eq." .. math.random(1, common.max_id)
                    .. "&select=*")
end

done = common.done

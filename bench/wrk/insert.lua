-- Insert one post per request with the service_role key, answer without a body.
local common = require("common")
wrk.method = "POST"
wrk.path = common.prefix .. "/posts"
wrk.body = '{"author_id":1,"title":"x","score":1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "return=minimal"
common.authorize(os.getenv("BENCH_WRITE_KEY"))
done = common.done

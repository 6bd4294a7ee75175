-- Sign in with email and password (POST /auth/v1/token?grant_type=password, as
-- supabase-js sends it) as one of BENCH_ACCOUNTS_FILE's accounts at random; the server
-- verifies an argon2id hash on each.
local common = require("common")
local bodies = {}
for _, account in ipairs(common.accounts()) do
  bodies[#bodies + 1] = string.format('{"email":"%s","password":"%s"}', account.email,
                                      account.password)
end
wrk.headers["Content-Type"] = "application/json"
common.authorize(os.getenv("BENCH_READ_KEY"))
setup = common.setup
init = common.seed

function request()
  return wrk.format("POST", "/auth/v1/token?grant_type=password", nil,
                    bodies[math.random(#bodies)])
end

done = common.done

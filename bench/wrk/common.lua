-- Shared by the workload scripts: path prefix, API key headers, and a done() that
-- prints one JSON line (marked BENCH_RESULT) for bench/run.py to parse.
-- Configured through the environment: BENCH_PREFIX ("/rest/v1", or "" for PostgREST),
-- BENCH_READ_KEY (anon key), BENCH_WRITE_KEY (service_role key), BENCH_MAX_ID, and for
-- the user workloads BENCH_USERS_FILE and BENCH_ACCOUNTS_FILE (written by bench/users.py).
local M = {}

M.prefix = os.getenv("BENCH_PREFIX") or "/rest/v1"
M.max_id = tonumber(os.getenv("BENCH_MAX_ID") or "100000")

function M.authorize(key)
  if key and key ~= "" then
    wrk.headers["apikey"] = key
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function M.read(path)
  wrk.method = "GET"
  wrk.path = M.prefix .. path
  M.authorize(os.getenv("BENCH_READ_KEY"))
end

-- Random choices seeded per thread, so every run sends the same sequence of requests:
-- a script that picks at random sets `setup = common.setup` and `init = common.seed`.
local threads = 0
function M.setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

function M.seed(args)
  math.randomseed(4242 + (thread_number or 0))
end

local function fields(line)
  local found = {}
  for field in line:gmatch("%S+") do
    found[#found + 1] = field
  end
  return found
end

-- The users of BENCH_USERS_FILE (lines "token user-id post-id post-id ..."), each with
-- the headers of a request as that user: the anon key as apikey, their token as bearer.
function M.users()
  local users = {}
  for line in io.lines(os.getenv("BENCH_USERS_FILE")) do
    local f = fields(line)
    local user = {id = f[2], posts = {}, headers = {
      ["apikey"] = os.getenv("BENCH_READ_KEY"), ["Authorization"] = "Bearer " .. f[1]}}
    for i = 3, #f do
      user.posts[#user.posts + 1] = f[i]
    end
    users[#users + 1] = user
  end
  return users
end

-- A GET as a user picked at random; `path(user)` gives the path after the prefix.
function M.user_request(users, path)
  return function()
    local user = users[math.random(#users)]
    return wrk.format("GET", M.prefix .. path(user), user.headers)
  end
end

-- The accounts of BENCH_ACCOUNTS_FILE (lines "email password").
function M.accounts()
  local accounts = {}
  for line in io.lines(os.getenv("BENCH_ACCOUNTS_FILE")) do
    local f = fields(line)
    accounts[#accounts + 1] = {email = f[1], password = f[2]}
  end
  return accounts
end

function M.done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 90, 99, 99.9}) do
    p[#p + 1] = string.format('"%s":%d', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"percentiles":{%s}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max, table.concat(p, ",")))
end

return M

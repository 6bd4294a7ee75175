-- Shared by the workload scripts: path prefix, API key headers, and a done() that
-- prints one JSON line (marked BENCH_RESULT) for bench/run.py to parse.
-- Configured through the environment: BENCH_PREFIX ("/rest/v1", or "" for PostgREST),
-- BENCH_READ_KEY (anon key), BENCH_WRITE_KEY (service_role key), BENCH_MAX_ID.
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

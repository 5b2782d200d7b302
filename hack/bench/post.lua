-- wrk script: POST the same V2 infer body (read from $BENCH_BODY) on every request.
-- Besides wrk's -d time limit, each thread stops after $BENCH_MAX_REQUESTS responses (default 500000),
-- so a run is bounded in count as well as in time.
local f = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local max_requests = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "500000")
local answered = 0

function response(status, headers, body)
  answered = answered + 1
  if answered >= max_requests then
    wrk.thread:stop()
  end
end

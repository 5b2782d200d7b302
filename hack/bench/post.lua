-- wrk script: POST the same V2 infer body (read from $BENCH_BODY) on every request.
local f = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

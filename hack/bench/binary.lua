-- wrk script for the binary tensor data extension: POST the same body (JSON part + tensor bytes,
-- read from $BENCH_BODY) with the Inference-Header-Content-Length header ($BENCH_HEADER_LENGTH) on
-- every request, and check every answer: a 200 whose bytes after its JSON part (the length in its
-- own Inference-Header-Content-Length header) equal $BENCH_EXPECT_TAIL's content, which run.py took
-- from an answer it decoded and compared with the JSON predictions. Other 200s are counted as wrong
-- (non-2xx answers wrk counts itself); done() prints "wrong: N" and "checked: N".
-- Bounded like post.lua: wrk's -d time limit and $BENCH_MAX_REQUESTS responses per thread.
local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

wrk.method = "POST"
wrk.body = slurp(os.getenv("BENCH_BODY"))
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = os.getenv("BENCH_HEADER_LENGTH")

local expected_tail = slurp(os.getenv("BENCH_EXPECT_TAIL"))
local max_requests = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "500000")
local threads = {}
answered = 0
wrong = 0

function setup(thread)
  table.insert(threads, thread)
end

local function json_length(headers)
  for key, value in pairs(headers) do
    if string.lower(key) == "inference-header-content-length" then
      return tonumber(value)
    end
  end
  return nil
end

function response(status, headers, body)
  answered = answered + 1
  if status == 200 then
    local length = json_length(headers)
    if length == nil or string.sub(body, length + 1) ~= expected_tail then
      wrong = wrong + 1
    end
  end
  if answered >= max_requests then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total_wrong, total = 0, 0
  for _, thread in ipairs(threads) do
    total_wrong = total_wrong + thread:get("wrong")
    total = total + thread:get("answered")
  end
  io.write(string.format("wrong: %d\nchecked: %d\n", total_wrong, total))
end

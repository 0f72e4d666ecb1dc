-- wrk script for `llm4sbr serve` (bench/serve_wrk.sh): POSTs the bodies of the file in BODIES (one JSON request a
-- line, from serve_bench --dump-bodies) to /v1/recommend, each thread from its own offset, and counts non-200s.
local bodies = {}
local next_body = 1
non_200 = 0  -- global: done() reads it from each thread

local threads = {}

function setup(thread)
  thread:set("offset", math.random(1, 1000))
  threads[#threads + 1] = thread
end

function init(args)
  for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
  next_body = offset
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body = bodies[(next_body % #bodies) + 1]
  next_body = next_body + 1
  return wrk.format(nil, "/v1/recommend", nil, body)
end

function response(status, headers, body)
  if status ~= 200 then non_200 = non_200 + 1 end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do failed = failed + thread:get("non_200") end
  io.write(string.format("non-200 answers: %d; requests/s: %.0f\n", failed,
                         summary.requests / (summary.duration / 1e6)))
end

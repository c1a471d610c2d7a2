-- wrk script: POST the file named by BODY, as is, with Content-Type CONTENT_TYPE (default
-- application/json) and, when HEADER is set ("Name: value"), one more header (the OIP binary
-- tensor extension's Inference-Header-Content-Length). serve_bench.py prepares every body.
local f = assert(io.open(os.getenv("BODY"), "rb")); local body = f:read("*all"); f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
local extra = os.getenv("HEADER")
if extra and extra ~= "" then
  local name, value = assert(extra:match("^([^:]+):%s*(.*)$"))
  wrk.headers[name] = value
end
wrk.body = body
-- The same per-response Lua call as ../shared/baseline/multipart.lua makes, so the client costs
-- the same per request whichever script a server is measured with.
local statuses = {}
response = function(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end

-- wrk script: POST {"args": [1, 2]} as JSON; prints requests/s and p99 as one line.
wrk.method = "POST"
wrk.body = '{"args":[1,2]}'
wrk.headers["Content-Type"] = "application/json"

local non202 = 0
response = function(status, headers, body)
  if status ~= 202 then
    non202 = non202 + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout
  ))
end

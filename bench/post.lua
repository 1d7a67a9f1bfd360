-- post.lua - wrk script for the non-streaming cells of bench/run.py.
--
-- wrk -s bench/post.lua ... -- BODYFILE [/PATH] [HEADER: VALUE]...
-- Posts the same chat request (read once from BODYFILE) on every request,
-- and at the end prints one line "JSON {...}" with throughput, response
-- bytes per request and latency percentiles in microseconds (p99.9 as
-- "p999"), which bench/run.py parses.  Extra header
-- arguments are added to every request (this is where Authorization goes
-- once sluice has API keys); an argument starting with "/" is the path
-- posted to instead of /v1/chat/completions (the translation cells'
-- /v1/messages).

function init(args)
   local f = assert(io.open(args[1], "rb"))
   wrk.body = f:read("*a")
   f:close()
   wrk.method = "POST"
   wrk.path = "/v1/chat/completions"
   wrk.headers["Content-Type"] = "application/json"
   for i = 2, #args do
      if args[i]:sub(1, 1) == "/" then wrk.path = args[i] end
      local k, v = args[i]:match("^([^:]+):%s*(.*)$")
      if k then wrk.headers[k] = v end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'JSON {"tool":"wrk","requests":%d,"seconds":%.3f,"rps":%.1f,' ..
      '"bytes_per_req":%.1f,"errors":%d,"non2xx":%d,' ..
      '"latency_us":{"mean":%.1f,"p50":%d,"p95":%d,"p99":%d,' ..
      '"p999":%d,"max":%d}}\n',
      summary.requests, summary.duration / 1e6,
      summary.requests / (summary.duration / 1e6),
      summary.bytes / math.max(summary.requests, 1),
      e.connect + e.read + e.write + e.timeout, e.status,
      latency.mean, latency:percentile(50), latency:percentile(95),
      latency:percentile(99), latency:percentile(99.9), latency.max))
end

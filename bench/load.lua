-- wrk's requests for bench/intake.py, and a count of the answers by status.
--
--   wrk ... -s bench/load.lua URL -- post EXPECTED KEY BODY ACCEPTED
--       BODY holds ORDERID, replaced by a new id each request; the orderId of each answer
--       with the EXPECTED status is written to the file ACCEPTED.N (N the wrk thread's number)
--   wrk ... -s bench/load.lua URL -- get EXPECTED KEY IDS_FILE (ids, one a line, in turn)
--   wrk ... -s bench/load.lua URL -- hello EXPECTED            (GET /hello)
--   wrk ... -s bench/load.lua URL -- hook EXPECTED             (POST /hooks, a ping event)
--   wrk ... -s bench/load.lua URL -- write EXPECTED KEY BODY ACCEPTED   (as post, to the hello's
--       POST /floor/orders) and read EXPECTED KEY IDS_FILE (as get, GET /floor/orders/ID);
--       intake EXPECTED KEY BODY ACCEPTED (as post, to the hello's POST /floor/intake), and
--       contracted (the same, to POST /floor/contracted)
--
-- done() prints one line, "BENCH {json}": requests, duration, the answers with the EXPECTED
-- status and those without (by status), wrk's socket errors, and p50/p99 latency in µs.

local threads = {}
local posting = {post = true, write = true, intake = true, contracted = true}
local paths = {post = "/t2mobile/fulfilment", write = "/floor/orders", intake = "/floor/intake",
               contracted = "/floor/contracted"}

function setup(thread)
   thread:set("number", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   mode, expected, key = args[1], tonumber(args[2]), args[3]
   matched, unmatched, others = 0, 0, ""
   local unexpected = {}
   sent = 0
   if posting[mode] then
      local at = string.find(args[4], "ORDERID", 1, true)
      before, after = string.sub(args[4], 1, at - 1), string.sub(args[4], at + 7)
      headers = {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}
      accepted = io.open(args[5] .. "." .. number, "w")
   elseif mode == "get" or mode == "read" then
      ids = {}
      for line in io.lines(args[4]) do
         table.insert(ids, line)
      end
      math.randomseed(number)
      sent = math.random(#ids)  -- each thread from its own place in the list
      headers = {["Authorization"] = "Bearer " .. key}
   end
   -- a status seen that was not expected: counted, and kept as text done() can read
   note = function(status)
      unexpected[status] = (unexpected[status] or 0) + 1
      local parts = {}
      for code, count in pairs(unexpected) do
         table.insert(parts, code .. ":" .. count)
      end
      others = table.concat(parts, " ")
   end
end

function request()
   sent = sent + 1
   if posting[mode] then
      -- the thread's number keeps ids apart across threads; BODY's tag across runs
      local body = before .. number .. "-" .. sent .. after
      local path = paths[mode]
      return wrk.format("POST", path, headers, body)
   elseif mode == "get" or mode == "read" then
      local path = mode == "get" and "/t2mobile/orders/" or "/floor/orders/"
      return wrk.format("GET", path .. ids[(sent - 1) % #ids + 1], headers)
   elseif mode == "hook" then
      return wrk.format("POST", "/hooks", nil, '{"type": "ping", "data": {}}')
   end
   return wrk.format("GET", "/hello")
end

function response(status, response_headers, body)
   if status == expected then
      matched = matched + 1
      if accepted then
         accepted:write(string.match(body, '"orderId"%s*:%s*"([^"]+)"') or "?", "\n")
         accepted:flush()
      end
   else
      unmatched = unmatched + 1
      note(status)
   end
end

function done(summary, latency, requests)
   local matched_all, unmatched_all, others_all = 0, 0, {}
   for _, thread in ipairs(threads) do
      matched_all = matched_all + thread:get("matched")
      unmatched_all = unmatched_all + thread:get("unmatched")
      local text = thread:get("others")
      if text ~= "" then
         table.insert(others_all, text)
      end
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "matched": %d, "unmatched": %d, '
         .. '"others": "%s", "connect": %d, "read": %d, "write": %d, "timeout": %d, '
         .. '"p50_us": %d, "p99_us": %d}\n',
      summary.requests, summary.duration, matched_all, unmatched_all,
      table.concat(others_all, " "), errors.connect, errors.read, errors.write,
      errors.timeout, math.floor(latency:percentile(50)), math.floor(latency:percentile(99))
   ))
end

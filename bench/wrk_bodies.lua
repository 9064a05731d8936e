-- Cycles through pre-signed webhook bodies (one per line) so that every request carries a new
-- messageId and a valid signature; each wrk thread takes every n-th line from its own offset.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  bodies = {}
  local path = os.getenv("WRK_BODIES")
  local stride = tonumber(os.getenv("WRK_THREADS") or "1")
  local i = 0
  for line in io.lines(path) do
    if i % stride == tid then table.insert(bodies, line) end
    i = i + 1
  end
  index = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  index = index + 1
  if index > #bodies then index = 1 end
  return wrk.format(nil, "/webhooks/inbound-sms", nil, bodies[index])
end

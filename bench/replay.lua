-- replay.lua - wrk script: send the requests of a table built by
-- bench/s3_requests.py, round robin, each wrk thread from its own offset.
--   wrk -t2 -c64 -d5s -s bench/replay.lua URL -- REQUESTS.lua

local counter = 0

function setup(thread)
    thread:set("thread_id", counter)
    counter = counter + 1
end

local built = {}
local n = 0
local i = 0

function init(args)
    dofile(args[1])
    for _, r in ipairs(requests) do
        n = n + 1
        built[n] = wrk.format(r[1], r[2], r[3], r[4])
    end
    i = (thread_id or 0) * math.floor(n / 2)
end

function request()
    i = i % n + 1
    return built[i]
end

-- paths.lua - wrk script: GET the paths listed in a file, round robin.
--   wrk -t2 -c64 -d5s -s bench/paths.lua http://127.0.0.1:PORT -- PATHS_FILE
-- Each wrk thread starts at a different place in the list, so the threads do
-- not ask for the same key at the same moment.  Headers given with -H (for
-- example Accept-Encoding) go into every request.

local counter = 0

function setup(thread)
    thread:set("thread_id", counter)
    counter = counter + 1
end

local paths = {}
local n = 0
local i = 0

function init(args)
    local file = args[1]
    if file == nil then
        error("paths.lua: give the paths file after --")
    end
    for line in io.lines(file) do
        if line ~= "" then
            n = n + 1
            paths[n] = line
        end
    end
    if n == 0 then
        error("paths.lua: no paths in " .. file)
    end
    i = ((thread_id or 0) * 7919) % n
end

function request()
    i = i % n + 1
    return wrk.format("GET", paths[i])
end

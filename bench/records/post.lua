-- wrk: POST one new record per request, each with its own title.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"title":"note ' .. n .. '","done":false,"owner":"bench"}')
end

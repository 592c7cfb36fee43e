-- wrk script: member-enrol posts with an external id (and idempotency key) unique to each
-- request, so every request issues a new pass. Arguments after `--`: PREFIX MODE PROGRAM,
-- MODE "form" (what Zapier sends the relay or the proxy) or "json" (PassKit's API directly).
local prefix, mode, program, counter = "b", "form", "", 0

function init(args)
  prefix, mode, program = args[1] or prefix, args[2] or mode, args[3] or program
  if mode == "json" then
    wrk.headers["Content-Type"] = "application/json"
  else
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
end

function request()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  local body
  if mode == "json" then
    body = '{"programId":"' .. program .. '","tierId":"base","externalId":"' .. id ..
      '","person":{"emailAddress":"' .. id .. '@example.com","forename":"Bench"}}'
  else
    body = "external_id=" .. id .. "&email=" .. id .. "%40example.com&first_name=Bench" ..
      "&idempotency_key=" .. id
  end
  return wrk.format("POST", nil, nil, body)
end

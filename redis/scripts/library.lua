-- library: platformdb
-- version: 2
-- The preamble of the platformdb Redis Functions library (Redis 7+, Valkey 8).
--
-- `platformdb migrate up` assembles the library from this file and one file
-- per function (redis/scripts/<name>.lua, header "-- function: <name>") and
-- loads it with FUNCTION LOAD REPLACE on every primary, under the migrate ACL
-- user. Services only FCALL / FCALL_RO it: they can never load or evaluate code.
--
-- Each function file is written like a script, with KEYS and ARGV; the
-- assembler wraps its body as `local function <name>(KEYS, ARGV) ... end` and
-- registers it as `platformdb_<name>` through `register` below, which checks
-- the library version the caller needs: every call passes it as its LAST
-- argument (removed before the body sees ARGV). A caller that needs a newer
-- library than the one loaded gets "PLATFORMDB_OLD <loaded> <needed>" and
-- changes nothing.
--
-- Bump the version whenever a function's behaviour or arguments change, and
-- record the new checksum in library.sum (a test tells you the line).
-- LIBRARY_VERSION is declared by the assembler, from the version line above.

-- The most live sessions one user of one org may hold (session_create evicts
-- the oldest past it): it bounds every function that walks a user's index.
local MAX_SESSIONS = 1000

-- The server's clock in milliseconds: every stored time is the server's.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An integer argument within [min, max] (max optional), else nil.
local function int_arg(value, min, max)
  local n = tonumber(value)
  if not n or n ~= math.floor(n) or n < min or (max and n > max) then
    return nil
  end
  return n
end

local function register(name, flags, body)
  redis.register_function{
    function_name = 'platformdb_' .. name,
    flags = flags,
    callback = function(keys, args)
      local needed = tonumber(table.remove(args))
      if not needed or needed > LIBRARY_VERSION then
        return redis.error_reply('PLATFORMDB_OLD ' .. LIBRARY_VERSION .. ' ' .. tostring(needed))
      end
      return body(keys, args)
    end,
  }
end

-- A user's first twenty posts by id (a user at random), from private_posts: row-level
-- security (user_id = auth.uid()) does the filtering, so the request has no filter.
local common = require("common")
local users = common.users()
setup = common.setup
init = common.seed
request = common.user_request(users, function(user)
  return "/private_posts?select=*&order=id&limit=20"
end)
done = common.done

-- A user's first twenty posts by id (a user at random), from posts: no row-level
-- security, so the request filters on user_id itself.
local common = require("common")
local users = common.users()
setup = common.setup
init = common.seed
request = common.user_request(users, function(user)
  return "/posts?select=*&user_id=eq." .. user.id .. "&order=id&limit=20"
end)
done = common.done

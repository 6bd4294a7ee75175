-- Get one post by primary key as its owner (a user and one of their posts at random),
-- from posts: no row-level security, any row would be visible.
local common = require("common")
local users = common.users()
setup = common.setup
init = common.seed
request = common.user_request(users, function(user)
  return "/posts?id=eq." .. user.posts[math.random(#user.posts)] .. "&select=*"
end)
done = common.done

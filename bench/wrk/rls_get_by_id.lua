-- Get one post by primary key as its owner (a user and one of their posts at random),
-- from private_posts: the same rows, with row-level security (user_id = auth.uid()).
local common = require("common")
local users = common.users()
setup = common.setup
init = common.seed
request = common.user_request(users, function(user)
  return "/private_posts?id=eq." .. user.posts[math.random(#user.posts)] .. "&select=*"
end)
done = common.done

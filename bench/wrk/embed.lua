-- Twenty posts, each with its author's name embedded (many-to-one).
local common = require("common")
common.read("/posts?select=id,title,authors(name)&limit=20")
done = common.done

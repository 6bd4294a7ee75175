-- Twenty published posts with the highest scores above 500.
local common = require("common")
common.read("/posts?select=id,title,score&published=eq.true&score=gt.500&order=score.desc&limit=20")
done = common.done

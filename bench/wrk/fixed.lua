-- Fixed-JSON baseline: the same request line and headers as a read, any answer is fixed.
local common = require("common")
common.read("/posts?select=id,title,score&limit=20")
done = common.done

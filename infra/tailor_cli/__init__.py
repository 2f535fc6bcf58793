"""The `tailor` command line: a parser (main) that dispatches to one module per verb group, each calling into the
local AWS (tailor_local) or the lab (tailor_lab), where the work is done."""

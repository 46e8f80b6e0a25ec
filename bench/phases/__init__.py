"""The benchmark's phases, one module per job.

A phase is a function phase(env, plan, res) that measures and stores what
it found as attributes of `res`; a report function report(R, plan, res) turns
those into rows of the table. bench/bench.py lists both, in order: phases
run in the order listed (later ones start from the tasks earlier ones left
running), and rows appear in the order their report functions are listed.
"""

"""The paper's experiments: definitions as data, their expansion into runs, and the runner.

`definitions` holds the experiments (`EXPERIMENTS`) and scales (`SCALES`); `plan` expands one
into datasets, runs and evaluation groups with their `permakey ...` command lines; `runner`
executes a plan resumably (`run_plan`) and owns `train_argv`, the "train, resume or keep" rule
that `permakey demo` shares.
"""

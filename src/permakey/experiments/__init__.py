"""The paper's experiments: definitions as data, their expansion into steps, and the runner.

`definitions` holds the experiments (`EXPERIMENTS`) and scales (`SCALES`); `plan` expands one
into datasets, runs and evaluation groups, each with its `steps.Step` (a library call as data:
collect, train, resume, evaluate, show); `runner` executes a plan resumably (`run_plan`), in
this process or in subprocess workers (`worker`), and owns `train_step`, the "train, resume or
keep" rule that `permakey demo` shares.
"""

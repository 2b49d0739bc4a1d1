"""Run plumbing shared by train.py and evaluate.py: typed configs, run folders, checkpoints."""

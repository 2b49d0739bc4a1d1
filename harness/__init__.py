"""Measurement shared by training and checkpoints: evaluation (evaluation.py), overestimation
bias (bias.py), held-out-level generalization (generalization.py), plots; UTD fits later. The
harness never imports a specific agent."""

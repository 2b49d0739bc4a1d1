"""Measurement shared by training and checkpoints: evaluation now; bias, UTD and
generalization reports in later issues. The harness never imports a specific agent."""

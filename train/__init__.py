"""Training loops, the CLI, logging, checkpoints, evaluation and replay."""

"""Single-process training on a CPU (or one GPU): HF generation backend, verl's losses, metrics, checkpoints."""

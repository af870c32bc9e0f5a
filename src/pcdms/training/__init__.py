"""Training: the one training loop (`loop.train`), the state a checkpoint holds, preview grids and DeepSpeed
ZeRO through accelerate."""

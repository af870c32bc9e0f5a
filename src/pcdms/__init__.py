"""PCDMs: Progressive Conditional Diffusion Models for pose-guided person image synthesis (ICLR 2024).

Data flows one way: source image + poses -> prior (stage 1, target CLIP embedding)
-> inpaint (stage 2, coarse image) -> refine (stage 3, final image).
"""

__version__ = "0.1.0"

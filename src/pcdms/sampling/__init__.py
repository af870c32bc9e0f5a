"""Sampling: `PCDMsPipeline` runs the three stages (source image + poses -> prior -> inpaint -> refine -> image)
through the one sampling loop of `pcdms.models.diffusion`, and its inference fast paths."""

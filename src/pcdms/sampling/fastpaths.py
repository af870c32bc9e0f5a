"""Inference fast paths (issue 16), each behind a `sample.*` switch and each giving the plain path's images
within float tolerance (tests/test_fastpaths.py):

- `compile`: `torch.compile` of the UNets and the prior transformer, in place (`nn.Module.compile`: the
  weights keep their names). The first call of each shape compiles, which takes a while; later calls are faster.
- `channels_last`: the UNets in channels-last memory format, which GPU convolutions prefer.
- `vae_slicing` / `vae_tiling`: diffusers' `AutoencoderKL` one image at a time / in overlapping tiles, for
  large batches or images on small GPUs (SD VAEs only; space-to-depth has no memory to save).
- `vae_fp32_decode` (on by default): with half precision weights the VAE stays in float32, so decoding never
  overflows (the SD VAE's known fp16 failure: black or NaN images) at the cost of a small, rarely-run network.
Half precision itself is the pipeline's `dtype` (`pcdms generate --precision fp16|bf16`).
Everything computed once per source is already shared: encoders run once per pair and their outputs are
repeated for its samples; each stage's conditions are prepared once per sampling call.
"""

from __future__ import annotations

from typing import Any

import torch

from pcdms.config import SampleConfig


def apply_fast_paths(pipe: Any, sample: SampleConfig, dtype: torch.dtype | None) -> list[str]:
    """Switch on the fast paths `sample` asks for on a pipeline's modules; returns the names applied."""
    applied = []
    unets = [stage.unet for stage in (pipe.inpaint, pipe.refine) if stage is not None]
    vae = pipe.encoders.autoencoder.vae if pipe.encoders is not None else None
    if dtype in (torch.float16, torch.bfloat16) and vae is not None and sample.vae_fp32_decode:
        vae.to(dtype=torch.float32)
        applied.append("vae_fp32_decode")
    if sample.channels_last:
        for unet in unets:
            unet.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    if vae is not None and sample.vae_slicing:
        vae.enable_slicing()
        applied.append("vae_slicing")
    if vae is not None and sample.vae_tiling:
        vae.enable_tiling()
        applied.append("vae_tiling")
    if sample.compile:
        for unet in unets:
            unet.compile()
        if pipe.prior is not None:
            for block in pipe.prior.transformer_blocks:
                block.compile()
        applied.append("compile")
    return applied

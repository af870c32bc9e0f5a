"""The model folder has one writer (`pcdms.models.folder.assemble_model`): `PCDMsPipeline.save_pretrained`,
`pcdms assemble` and `pcdms convert` all go through it, so they share its layout and its refusals."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import yaml

from pcdms.config import load_config
from pcdms.models.encoders import build_encoders
from pcdms.errors import UserError
from pcdms.models.inpaint import InpaintModel
from pcdms.models.prior import PriorModel
from pcdms.sampling.pipeline import PCDMsPipeline


def _pipe():
    torch.manual_seed(0)
    cfg = load_config("tiny")
    return cfg, PCDMsPipeline(build_encoders(cfg.encoders), InpaintModel(cfg.inpaint), PriorModel(cfg.prior), None,
                              cfg.data.height, cfg.data.width, cfg.sample)


def test_save_pretrained_writes_what_from_pretrained_reads(tmp_path):
    cfg, pipe = _pipe()
    root = pipe.save_pretrained(tmp_path / "model", cfg)
    assert sorted(p.name for p in root.iterdir()) == ["config.yaml", "encoders", "inpaint", "prior"]
    written = yaml.safe_load((root / "config.yaml").read_text())
    for name in ("prior", "inpaint"):  # each stage section is what its stage folder says
        assert written[name] == json.loads((root / name / "config.json").read_text())["config"]
    again = PCDMsPipeline.from_pretrained(root)
    assert again.refine is None and again.prior is not None
    for name in ("prior", "inpaint"):
        ours, theirs = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_save_pretrained_refuses_what_assemble_refuses(tmp_path):
    """An encoder path outside the folder would not load once the folder is copied: refused before any file
    is written, as `pcdms assemble` and `pcdms convert` refuse it."""
    cfg, pipe = _pipe()
    outside = replace(cfg, encoders=replace(cfg.encoders, dino=replace(cfg.encoders.dino,
                                                                        pretrained_path=str(tmp_path / "dino"))))
    with pytest.raises(UserError, match="self-contained"):
        pipe.save_pretrained(tmp_path / "model", outside)
    assert not (tmp_path / "model" / "config.yaml").exists()

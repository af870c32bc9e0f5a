"""The config system: presets round-trip, overrides are strict, errors are one line and name the key."""

from __future__ import annotations

import dataclasses

import pytest

from pcdms.cli import main
from pcdms.config import (
    PRESET_DIR,
    RunConfig,
    config_from_yaml,
    config_to_yaml,
    expand_path,
    load_config,
    preset_names,
    require_folder,
    save_config,
)
from pcdms.errors import ConfigError, UserError


def test_expected_presets_exist():
    assert {"tiny", "deepfashion-256", "deepfashion-512", "market-128"} <= set(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_preset_yaml_round_trip_is_lossless(name):
    cfg = load_config(name)
    text = config_to_yaml(cfg)
    again = config_from_yaml(text)
    assert again == cfg
    assert config_to_yaml(again) == text


def test_paper_preset_has_paper_shapes():
    cfg = load_config("deepfashion-256")
    assert (cfg.data.height, cfg.data.width) == (256, 176)
    assert (cfg.prior.num_layers, cfg.prior.width, cfg.prior.num_heads) == (20, 2048, 32)
    assert cfg.encoders.dino.hidden_size == 1536 and cfg.encoders.clip.projection_dim == 1024
    assert cfg.inpaint.unet.block_out_channels == (320, 640, 1280, 1280)
    assert cfg.prior.schedule.beta_schedule == "squaredcos_cap_v2"
    assert cfg.prior.schedule.prediction_type == "sample"
    assert (cfg.sample.scheduler, cfg.sample.num_inference_steps) == ("ddim", 20)
    assert load_config("deepfashion-512").data.width == 352
    assert (load_config("market-128").data.height, load_config("market-128").data.width) == (128, 64)


def test_overrides_are_typed():
    cfg = load_config("tiny", ["train.learning_rate=1e-5", "train.batch_size=2", "inpaint.unet.layers_per_block=2"])
    assert cfg.train.learning_rate == pytest.approx(1e-5) and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.batch_size == 2
    assert cfg.inpaint.unet.layers_per_block == 2
    cfg = load_config("tiny", ["inpaint.unet.block_out_channels=[16,32]", "encoders.dino.pretrained_path=null"])
    assert cfg.inpaint.unet.block_out_channels == (16, 32)
    assert cfg.encoders.dino.pretrained_path is None


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError) as err:
        load_config("tiny", ["train.learning_rte=1e-4"])
    message = str(err.value)
    assert "train.learning_rte" in message and "train.learning_rate" in message
    assert "\n" not in message


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"train\.batch_size.*int.*'eight'"):
        load_config("tiny", ["train.batch_size=eight"])
    with pytest.raises(ConfigError, match=r"sample\.scheduler"):
        load_config("tiny", ["sample.scheduler=magic"])


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("_base_: tiny\ntrain:\n  batch_sise: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.batch_sise'.*'train\.batch_size'"):
        load_config(str(path))


def test_yaml_file_with_base_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("_base_: tiny\ntrain:\n  batch_size: 3\n")
    cfg = load_config(str(path))
    assert cfg.train.batch_size == 3 and cfg.inpaint.latent_channels == load_config("tiny").inpaint.latent_channels


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    # a run folder called tiny/ in the working directory: `--config tiny` still means the preset
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()
    assert load_config("tiny") == load_config(str(PRESET_DIR / "tiny.yaml"))
    (tmp_path / "runs").mkdir()
    with pytest.raises(ConfigError, match=r"unknown preset 'runs'.*or a YAML file path"):
        load_config("runs")


def test_inconsistent_sections_are_rejected_naming_both_keys():
    with pytest.raises(ConfigError, match=r"inpaint\.image_token_dim.*encoders\.dino\.hidden_size"):
        load_config("tiny", ["encoders.dino.hidden_size=64"])
    with pytest.raises(ConfigError, match=r"data\.width=51.*nearest: 52"):
        load_config("tiny", ["data.width=51"])


def test_saved_config_reloads(tmp_path):
    cfg = load_config("tiny", ["train.max_steps=7"])
    path = save_config(cfg, tmp_path / "run")
    assert load_config(str(path)) == cfg


def test_sections_are_independent_dataclasses():
    cfg = load_config("tiny")
    assert dataclasses.is_dataclass(cfg.inpaint) and not isinstance(cfg.inpaint, RunConfig)
    assert cfg.inpaint.unet is not cfg.refine.unet or cfg.inpaint.unet == cfg.refine.unet


def test_model_paths_expand_and_missing_folders_explain(monkeypatch, tmp_path):
    monkeypatch.setenv("PCDMS_MODEL_DIR", str(tmp_path))
    assert expand_path("${PCDMS_MODEL_DIR}/dinov2-giant") == f"{tmp_path}/dinov2-giant"
    with pytest.raises(UserError, match=r"encoders\.dino\.pretrained_path") as err:
        require_folder("${PCDMS_MODEL_DIR}/dinov2-giant", "DINOv2-giant", "encoders.dino.pretrained_path")
    assert str(tmp_path) in str(err.value)
    (tmp_path / "dinov2-giant").mkdir()
    assert require_folder("${PCDMS_MODEL_DIR}/dinov2-giant", "DINOv2", "k").is_dir()


def test_cli_help_and_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "config" in capsys.readouterr().out
    assert main(["config", "--config", "tiny", "train.nope=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.nope" in err
    assert main(["config", "--config", "tiny", "sample.num_inference_steps=3"]) == 0
    assert config_from_yaml(capsys.readouterr().out).sample.num_inference_steps == 3

"""Long jobs say what they are doing: plain periodic lines in a log, one start-up summary naming the resize,
library bars that follow the switch, and a prior preview grid a person can read."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from pcdms.cli import main
from pcdms.data.synth import generate
from pcdms.training.previews import nearest
from pcdms.progress import Progress, choose_mode, quiet_library_bars
from pcdms.summary import inference_chain, training_chain

DEMO_MODEL = Path(__file__).resolve().parents[1] / "src" / "pcdms" / "assets" / "demo" / "model"


@pytest.fixture(scope="module")
def big_synth(tmp_path_factory) -> Path:
    """Images at 96x128 (w x h): twice the tiny preset's 48x64, so every job has to resize them."""
    root = tmp_path_factory.mktemp("synth128")
    generate(root, train_identities=3, test_identities=1, poses_per_identity=3, height=128, width=96, seed=3)
    return root


@pytest.fixture
def library_bars_on():
    """The libraries' bars enabled, as in a fresh process (an earlier in-process command may have silenced them)."""
    import diffusers.utils.logging
    import huggingface_hub.utils
    import transformers.utils.logging

    def enable() -> None:
        transformers.utils.logging.enable_progress_bar()
        diffusers.utils.logging.enable_progress_bar()
        huggingface_hub.utils.enable_progress_bars()

    enable()
    yield
    enable()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_every_n_steps_and_at_the_end_with_rate_and_eta(tmp_path):
    clock, stream = FakeClock(), io.StringIO()
    bar = Progress(10, "train x", "step", "lines", every_steps=4, every_seconds=1e9, jsonl=tmp_path / "p.jsonl",
                   stream=stream, clock=clock)

    def slow_data():
        for step in range(10):
            clock.now += 0.5  # waiting for data, counted by timed()
            yield step

    for step in bar.timed(slow_data()):
        clock.now += 1.5  # the step itself
        bar.update(1, loss=1.0 / (step + 1), lr=1e-4)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "train x: step 1/10 (10%)", "train x: step 4/10 (40%)", "train x: step 8/10 (80%)", "train x: step 10/10 (100%)"]
    # step 8: 4 steps in 8 s since the line at step 4; 2 steps left at 2 s each
    assert "loss 0.1250" in lines[2] and "lr 1.00e-04" in lines[2] and "0.5 step/s" in lines[2]
    assert "data wait 25%" in lines[2] and "ETA 4s" in lines[2] and "elapsed 16s" in lines[2]
    records = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 4, 8, 10] and records[2]["eta_s"] == pytest.approx(4.0)
    assert "\r" not in stream.getvalue()


def test_a_line_comes_after_every_seconds_even_between_step_multiples():
    clock, stream = FakeClock(), io.StringIO()
    bar = Progress(1000, "job", "pair", "lines", every_steps=500, every_seconds=60, stream=stream, clock=clock)
    for _ in range(3):
        clock.now += 40
        bar.update()
    assert [line.split(" | ")[0] for line in stream.getvalue().splitlines()] == [
        "job: pair 1/1000 (0%)", "job: pair 3/1000 (0%)"]  # first update, then once 80 s had passed


def test_other_processes_and_off_print_nothing(tmp_path):
    stream = io.StringIO()
    for bar in (Progress(3, "a", mode="lines", enabled=False, stream=stream, jsonl=tmp_path / "x.jsonl"),
                Progress(3, "b", mode="off", stream=stream)):
        bar.update(3)
        bar.write("hello")
        bar.close()
    assert stream.getvalue() == "" and not (tmp_path / "x.jsonl").exists()


def test_mode_is_lines_unless_both_streams_are_terminals(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.setattr(sys, "stderr", Tty())
    assert choose_mode() == "bar" and choose_mode(no_progress=True) == "lines"
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # `pcdms ... > log.txt`
    assert choose_mode() == "lines"


def test_library_bars_follow_the_switch(library_bars_on):
    import diffusers.utils.logging
    import huggingface_hub.utils
    import transformers.utils.logging

    quiet_library_bars("bar", is_main=True)  # a terminal: left as the user has them
    assert transformers.utils.logging.is_progress_bar_enabled()
    quiet_library_bars("bar", is_main=False)  # another process of a multi-process run
    assert not transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.enable_progress_bar()
    quiet_library_bars("lines")
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert not diffusers.utils.logging.is_progress_bar_enabled()
    assert huggingface_hub.utils.are_progress_bars_disabled()


def test_assemble_into_a_log_has_no_library_bars(tmp_path, library_bars_on, capfd):
    from pcdms.config import load_config
    from pcdms.models.inpaint import InpaintModel

    InpaintModel(load_config("tiny").inpaint).save_pretrained(tmp_path / "inpaint")
    assert main(["assemble", "--config", "tiny", "--inpaint", str(tmp_path / "inpaint"), "--out", str(tmp_path / "m")]) == 0
    captured = capfd.readouterr()
    assert (tmp_path / "m" / "encoders" / "clip").is_dir()  # transformers wrote it (with a bar, in a terminal)
    assert "Writing model shards" not in captured.err and "\r" not in captured.err


def test_summary_chains_name_every_resize():
    # GFLA-style 256x256 files with white bars around a 176x256 annotation frame, into a 44x64 model
    assert training_chain((256, 256), (256, 176), (44, 64)) == (
        "256x256 -> centre crop 176x256 (the annotation frame's aspect) -> 44x64 (bicubic resize, aspect kept)")
    assert training_chain((176, 256), (256, 176), (64, 64)).endswith("64x64 (bicubic resize, squashed: aspect 0.69 -> 1.00)")
    assert training_chain((44, 64), (64, 44), (44, 64)) == "44x64 -> 44x64 (already the model's size)"
    assert inference_chain((600, 800), None, (44, 64), stretch=False) == (
        "600x800 -> padded with its border colour to 600x873 (the model's aspect) -> 44x64 (bicubic resize, "
        "aspect kept); results come back at 600x800")
    assert inference_chain((600, 800), None, (44, 64), stretch=True).startswith(
        "600x800 -> 44x64 (bicubic resize, squashed: aspect 0.75 -> 0.69)")


def test_nearest_gallery_image_is_the_one_with_the_highest_cosine():
    gallery = torch.eye(4) + 0.1
    queries = torch.stack([gallery[2] * 3.0, gallery[0] + 0.01 * torch.randn(4)])
    index, cosine = nearest(queries, gallery)
    assert index.tolist() == [2, 0] and cosine[0] == pytest.approx(1.0)
    shared = torch.tensor([0.0, 0.0, 0.0, 50.0])  # a component every embedding shares hides the differences
    index, _ = nearest(torch.stack([gallery[1] + shared]), gallery + shared, centre=(gallery + shared).mean(0))
    assert index.tolist() == [1]


def test_piped_train_no_progress_prints_summary_and_periodic_lines_and_writes_prior_previews(
        tmp_path, big_synth, library_bars_on, capfd):
    out = tmp_path / "prior"
    code = main(["train", "--stage", "prior", "--config", "tiny", "--out", str(out), "--no-progress", "--resume",
                 f"data.root={big_synth}", "train.max_steps=4", "train.log_every=2", "train.batch_size=2",
                 "train.sample_every=4", "data.num_workers=0", "sample.num_inference_steps=2"])
    result = capfd.readouterr()  # what the file descriptors got, as a pipe or a log file would
    assert code == 0, result.err[-3000:]
    assert "\r" not in result.out + result.err  # a log file reads top to bottom
    text = result.out
    assert "96x128 -> 48x64 (bicubic resize, aspect kept)" in text  # the summary names the resize
    assert "18 pairs" in text and f"{out / 'logs'}" in text
    assert "so this is a new run from step 0" in text and "--resume" not in result.err  # information, on stdout
    lines = [x for x in text.splitlines() if x.startswith("train prior: step ")]
    assert [x.split(" | ")[0] for x in lines] == [
        "train prior: step 1/4 (25%)", "train prior: step 2/4 (50%)", "train prior: step 4/4 (100%)"]
    for line in lines:
        for field in ("loss ", "lr ", "step/s", "data wait ", "peak RAM ", "ETA "):
            assert field in line, (field, line)
    records = [json.loads(x) for x in (out / "logs" / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 4] and all("loss" in r for r in records)
    # source | target pose | target | training images nearest to the target and to the prediction; 4 pairs
    grid = Image.open(out / "samples" / "step-0000004.png")
    # (labels above the columns and captions under the cells at least 14 px high, so the height is not pinned)
    assert grid.width == 5 * (96 + 2) + 2 and grid.height >= 14 + 4 * (128 + 14 + 2) + 2


def test_generate_over_a_split_summarises_the_fit_and_reports_in_lines(tmp_path, big_synth, library_bars_on, capfd):
    out = tmp_path / "gen"
    code = main(["generate", "--model", str(DEMO_MODEL), "--dataset", str(big_synth), "--split", "test",
                 "--limit", "2", "--steps", "1", "--no-progress", "--device", "cpu", "--batch-size", "1", "--out", str(out)])
    captured = capfd.readouterr()
    assert code == 0, captured.err
    # the demo model is 44x64: 96x128 images are padded to its aspect, resized, and come back at their size
    assert "96x128 -> padded with its border colour to 96x140 (the model's aspect) -> 44x64" in captured.out
    assert "results come back at 96x128" in captured.out and "2 pairs (the first 2 of 6)" in captured.out
    assert "generate test: pair 2/2 (100%)" in captured.out and "ETA" in captured.out
    assert "\r" not in captured.out + captured.err and "Loading weights" not in captured.err


def test_quiet_third_party_drops_native_log_lines_and_passes_the_rest_as_it_comes(capfd):
    import os

    from pcdms.progress import quiet_third_party

    with quiet_third_party():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"W0000 00:00:1796587412.262042    5103 inference_feedback_manager.cc:114] Feedback manager\n")
        os.write(2, b"pcdms generate: warning: kept\n")
        os.write(2, b"\rbar  10%")  # a progress bar's line is passed on before it ends
        os.write(2, b"\rbar 100%\n")
        os.write(2, b"I0000 00:00:17.5 7 gl_context.cc:3")  # noise split over two writes
        os.write(2, b"57] GL version\nE0000 00:00:17.5 7 x.cc:1] an error stays\n")
        assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    err = capfd.readouterr().err
    assert err == "pcdms generate: warning: kept\n\rbar  10%\rbar 100%\nE0000 00:00:17.5 7 x.cc:1] an error stays\n"
    assert "TRANSFORMERS_VERBOSITY" not in os.environ or os.environ["TRANSFORMERS_VERBOSITY"] != "error"
    with quiet_third_party(verbose=True):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert "TensorFlow Lite" in capfd.readouterr().err


def test_a_terminal_keeps_its_bars_while_stderr_is_filtered(monkeypatch):
    import pcdms.progress as progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    class Filtered(io.StringIO):  # descriptor 2 while it goes through the filter's pipe: not a terminal itself
        def fileno(self) -> int:
            return 2

    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setattr(sys, "stderr", Filtered())
    assert choose_mode() == "lines"
    monkeypatch.setattr(progress, "_filtered_stderr_is_terminal", True)  # ... but the real stderr is a terminal
    assert choose_mode() == "bar"

"""The code blocks of README.md and docs/*.md run as written, so the examples cannot rot.

Every fenced block names its language. ```python and ```bash / ```sh blocks are run, each page's blocks in page
order in one temporary folder (a later block may use what an earlier one wrote, as a reader following the page
would), with the repository's `src/`, `scripts/`, `benchmarks/` and `configs/` linked in, so relative paths
such as `src/pcdms/assets/demo/inputs/...` resolve. Python runs with this interpreter; in bash, `.venv/bin/`
means this interpreter's environment, so the test works from any checkout. Everything runs on the CPU
(`CUDA_VISIBLE_DEVICES=""`) and offline.

To keep the whole file within about two minutes on 2 cores, `pcdms` in a bash block is a shell function that adds
cost settings after the command's own arguments (the last value wins): `--steps 2` for demo, generate, refine and
animate, `--frames 4` for animate, `--skip fid_tf` for evaluate (loading the Inception network alone takes a
minute on 2 cores). What is checked is that each command, its options and its paths still work end to end.

A block that is not meant to run (it needs a GPU, paper-scale weights or data, hours, or `make` itself) has
`<!-- not run: REASON -->` on the line before it. A ```text block (output, a file tree) is not code; any other
language is refused until this file says whether it runs. A runnable block without a marker runs; there is no
third way, so a new example cannot silently escape. Blocks not run are not reported as skipped tests: CI
fails on any skip, and their reasons are in the pages themselves.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python": "python", "bash": "bash", "sh": "bash"}
NOT_CODE = {"text"}  # output, a file tree
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.*?)\s*-->$")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
LINKED = ("src", "scripts", "benchmarks", "configs")  # what relative paths in the examples point into
BIN = Path(sys.executable).parent  # the environment `.venv/bin/` stands for
# cost settings appended to `pcdms <command>` in bash blocks (see the module docstring)
SHELL_PRELUDE = """\
set -euo pipefail
pcdms() {
    local extra=()
    case "${1:-}" in
        demo|generate|refine) extra=(--steps 2) ;;
        animate) extra=(--steps 2 --frames 4) ;;
        evaluate) extra=(--skip fid_tf) ;;
    esac
    "$PCDMS_BIN/pcdms" "$@" "${extra[@]}"
}
"""
TIMEOUT_S = 300


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the marker's reason, when the block carries one

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(page: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of one page, and what is wrong with its markers (a marker must be right before a block)."""
    blocks, problems = [], []
    lines = page.read_text(encoding="utf-8").split("\n")
    index = 0
    while index < len(lines):
        if NOT_RUN.match(lines[index].strip()) and not (index + 1 < len(lines) and FENCE.match(lines[index + 1])):
            problems.append(f"{page.relative_to(ROOT)}:{index + 1}: a 'not run' marker is not right before a block")
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("```")), None)
        if end is None:
            problems.append(f"{page.relative_to(ROOT)}:{index + 1}: a code block is never closed")
            break
        marker = NOT_RUN.match(lines[index - 1].strip()) if index > 0 else None
        blocks.append(Block(page, index + 1, fence["lang"], "\n".join(lines[index + 1:end]) + "\n",
                            marker["reason"] if marker else None))
        index = end + 1
    return blocks, problems


def to_run(page: Path) -> list[Block]:
    return [b for b in read_blocks(page)[0] if b.lang in RUNNABLE and b.not_run is None]


def test_every_block_runs_or_says_why() -> None:
    """Each block is runnable code that runs, runnable code marked 'not run: reason', or declared not code."""
    problems = []
    for page in PAGES:
        blocks, page_problems = read_blocks(page)
        problems += page_problems
        for block in blocks:
            if block.lang not in RUNNABLE and block.lang not in NOT_CODE:
                problems.append(f"{block.name}: code block language '{block.lang}' is neither run "
                                f"({', '.join(RUNNABLE)}) nor declared not code ({', '.join(NOT_CODE)})")
            if block.not_run is not None and not block.not_run:
                problems.append(f"{block.name}: 'not run' marker without a reason")
            if block.not_run is not None and block.lang in NOT_CODE:
                problems.append(f"{block.name}: 'not run' marker before a block that is not code")
    assert not problems, "\n".join(problems)
    assert sum(len(to_run(page)) for page in PAGES) >= 5, "expected the README's examples to run"


def test_relative_links_resolve() -> None:
    """Every relative link and image of the pages points at a file that exists, and an anchor at a heading."""
    link = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")
    problems = []
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for match in link.finditer(text):
            target = match[1] or match[2]
            if re.match(r"[a-z]+:", target):
                continue  # http://, mailto: ...
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                problems.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                problems.append(f"{page.relative_to(ROOT)}: {target}: no heading with that anchor")
    assert not problems, "\n".join(problems)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    headings = re.findall(r"^#+\s+(.*)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_is_a_front_page() -> None:
    """The README stays a front page; details belong in docs/."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < 300, f"README.md has {lines} lines: move details to a page under docs/"


@pytest.mark.parametrize("page", [p for p in PAGES if to_run(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(page: Path, tmp_path: Path) -> None:
    """Each runnable block of the page, in order, in one folder; every failing block is reported."""
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    env = {**os.environ, "PCDMS_BIN": str(BIN), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    assert (BIN / "pcdms").is_file(), f"no pcdms script beside {sys.executable}: install the project (make setup)"
    failures = []
    for block in to_run(page):
        if RUNNABLE[block.lang] == "python":
            script = tmp_path / f"block_{block.line}.py"
            script.write_text(block.code, encoding="utf-8")
            command = [sys.executable, str(script)]
        else:
            script = tmp_path / f"block_{block.line}.sh"
            code = block.code.replace(".venv/bin/pcdms", "pcdms").replace(".venv/bin/", "$PCDMS_BIN/")
            script.write_text(SHELL_PRELUDE + code, encoding="utf-8")
            command = ["bash", str(script)]
        try:
            done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            failures.append(f"{block.name}: still running after {TIMEOUT_S} s")
            continue
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-3000:]
            failures.append(f"{block.name}: exit status {done.returncode}\n{block.code}--- output (end) ---\n{output}")
    assert not failures, "\n\n".join(failures)

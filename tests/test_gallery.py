"""The shipped pose gallery by name: `pcdms pose gallery` lists it, `--target-pose NAME` uses it, an unknown name
says where to look."""

from __future__ import annotations

import pytest

from pcdms.cli import main
from pcdms.commands.demo import ASSETS
from pcdms.commands.generate import load_pose
from pcdms.errors import UserError
from pcdms.pose.gallery import GALLERY_DIR, describe, gallery, gallery_names, resolve_pose_file, view
from pcdms.pose import read_openpose_json

SOURCE = ASSETS / "inputs" / "id00161_00_front-full.png"


def test_gallery_command_lists_every_pose_with_its_view_and_what_it_shows(capsys):
    assert main(["pose", "gallery"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = gallery_names()
    assert len(names) >= 16 and "front-arms-raised" in names
    assert [line.split()[0] for line in lines[:-1]] == names
    row = next(line for line in lines if line.startswith("front-arms-raised "))
    assert row.split()[1] == "front" and "arms raised" in row
    assert str(GALLERY_DIR) in lines[-1] and "--target-pose NAME" in lines[-1]
    assert all(view(name) for name in names) and all(describe(name) != "-" for name in names)


def test_a_name_is_looked_up_in_the_gallery_then_as_a_file(tmp_path):
    assert resolve_pose_file("front-arms-raised", "--target-pose") == GALLERY_DIR / "front-arms-raised.json"
    pose = load_pose("front-arms-raised", "--target-pose")
    assert pose.allclose(read_openpose_json(GALLERY_DIR / "front-arms-raised.json"))
    mine = tmp_path / "mine.json"
    mine.write_text((GALLERY_DIR / "back-standing.json").read_text())
    assert resolve_pose_file(str(mine), "--target-pose") == mine
    assert set(gallery()) == set(gallery_names())


@pytest.mark.parametrize("value, near", [("front-arms-rised", "did you mean front-arms-raised"), ("dance.json", "")])
def test_an_unknown_name_that_is_no_file_says_how_to_list_the_gallery(value, near):
    with pytest.raises(UserError) as error:
        resolve_pose_file(value, "--target-pose")
    message = str(error.value)
    assert f"--target-pose '{value}'" in message and "`pcdms pose gallery`" in message and near in message
    assert "\n" not in message


def test_generate_with_an_unknown_pose_name_is_one_line_and_leaves_no_output_folder(tmp_path, capsys):
    out = tmp_path / "new" / "out"
    assert main(["generate", "--source", str(SOURCE), "--target-pose", "front-arms-rised", "--out", str(out),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pcdms pose gallery" in err[0] and "front-arms-raised" in err[0]
    assert not (tmp_path / "new").exists()

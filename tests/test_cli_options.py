"""One name and one meaning per option across the commands, read from the parsers; an unknown
option is the command's own usage with the nearest names; old spellings still work for one
release, with a warning."""

from __future__ import annotations

import pytest

from yolov3.cli.main import build_parser, main
from yolov3.cli.option_table import commands, markdown_table, option_table
from yolov3.cli.parser import SPELLINGS
from yolov3.cli.train import overrides_from_args
from yolov3.errors import YoloError
from yolov3.train.config import load_config

TABLE = option_table(build_parser())


def test_the_table_holds_every_command_and_option() -> None:
    assert [u.command for u in TABLE["--img-size"]] == [
        "detect", "val", "train", "export", "anchors", "explain assign", "explain channels",
        "explain layers"]
    assert {u.command for u in TABLE["--workers"]} == {"detect", "val", "train", "data check"}
    assert len(TABLE) > 40


@pytest.mark.parametrize("option", sorted(TABLE))
def test_an_option_takes_the_same_kind_of_value_in_every_command(option: str) -> None:
    kinds = {(u.command, u.kind) for u in TABLE[option] if not u.old}
    assert len({kind for _, kind in kinds}) <= 1, f"{option}: {sorted(kinds)}"


def test_no_option_has_two_spellings() -> None:
    # SPELLINGS holds the other spellings of our options (other tools', earlier releases'):
    # none is an option of any command, except as an old spelling that warns.
    shown = {name for name, uses in TABLE.items() if any(not u.old for u in uses)}
    assert not shown & set(SPELLINGS)
    for name, uses in TABLE.items():
        for use in (u for u in uses if u.old):
            assert use.replacement == SPELLINGS[name]
            replacement = use.replacement.split()[0]
            assert use.command in {u.command for u in TABLE[replacement]}, name


def test_the_markdown_table() -> None:
    text = markdown_table(build_parser())
    assert text.startswith("| Option | Takes | Commands |\n| --- | --- | --- |\n")
    assert ("| `--img-size` | SIZE or WxH | `detect`, `val`, `train`, `export`, `anchors`, "
            "`explain assign`, `explain channels`, `explain layers` |") in text
    assert "| `--precision` | choice: `auto`, `fp32`, `bf16`, `fp16`, `int8` |" in text
    assert "| `--batch` | `--batch-size` | `export` |" in text
    assert "| `--cfg` | `--model` | `anchors` |" in text
    rows = [line for line in text.splitlines() if line.startswith("| `--")]
    assert len(rows) == len(TABLE)


# --- unknown options ---------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "usage", "hint"), [
    (["train", "--epohcs", "10"], "usage: yolov3 train ", "--epohcs: did you mean --epochs?"),
    (["detect", "x.jpg", "--conff", "0.3"], "usage: yolov3 detect ",
     "--conff: did you mean --conf"),
    (["val", "--data", "d", "--imgsz", "320"], "usage: yolov3 val ",
     "--imgsz: did you mean --img-size?"),
    (["data", "check", "d", "--fixreport", "f"], "usage: yolov3 data check ",
     "--fixreport: did you mean --fix-report?"),
    (["explain", "layers", "--cfg", "yolov3"], "usage: yolov3 explain layers ",
     "--cfg: did you mean --model?"),
])
def test_an_unknown_option_is_the_commands_usage_and_the_nearest_names(argv, usage, hint,
                                                                       capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert "usage: yolov3 [-h]" not in err
    command = usage.removeprefix("usage: ").strip()
    error = err.splitlines()[-1]
    assert error.startswith(f"{command}: error: unrecognized arguments: {argv[-2]} {argv[-1]}")
    assert hint in error


def test_a_stray_value_is_named_without_a_guess(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--max-iter", "10", "20"])
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == "yolov3 train: error: unrecognized arguments: 20"


# --- old spellings -----------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "dest", "value", "old", "new"), [
    (["export", "--batch", "4"], "batch", 4, "--batch", "--batch-size"),
    (["anchors", "--data", "d", "--cfg", "yolov3-tiny"], "cfg", "yolov3-tiny", "--cfg",
     "--model"),
    (["export", "--half"], "half", True, "--half", "--precision fp16"),
])
def test_an_old_spelling_works_with_a_one_line_warning(argv, dest, value, old, new,
                                                       capsys) -> None:
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"yolov3 {argv[0]}: warning: {old} is deprecated")
    assert f"use {new}" in err


def test_the_new_spellings_mean_what_the_old_did(capsys) -> None:
    parse = build_parser().parse_args
    assert parse(["export", "--batch-size", "4"]).batch == 4
    assert parse(["export"]).batch == 1 and parse(["export"]).half is False
    assert parse(["anchors", "--data", "d", "--model", "yolov3-tiny"]).cfg == "yolov3-tiny"
    assert parse(["export", "--precision", "fp16"]).precision == "fp16"
    assert capsys.readouterr().err == ""
    assert "--batch " not in dict(commands(build_parser()))["export"].format_help()


# --- train --img-size WxH ------------------------------------------------------------------

@pytest.mark.parametrize(("size", "hw"), [("384x256", (256, 384)), ("256x384", (384, 256)),
                                          ("608x352", (352, 608)), ("320", (320, 320))])
def test_train_takes_width_x_height_as_img_size_and_aspect(size, hw) -> None:
    args = build_parser().parse_args(["train", "--img-size", size])
    config = load_config(None, overrides_from_args(args))
    assert config.data.input_hw == hw
    assert config.data.img_size == max(hw)


def test_train_refuses_a_width_x_height_the_aspect_would_round() -> None:
    args = build_parser().parse_args(["train", "--img-size", "384x250"])
    with pytest.raises(YoloError, match="--img-size 250 is not a multiple of 32"):
        overrides_from_args(args)


def test_anchors_says_it_measures_in_a_square_input(capsys) -> None:
    assert main(["anchors", "--data", "d", "--img-size", "384x256"]) == 1
    assert ("--img-size 384x256: yolov3 anchors measures the box shapes in a square input; "
            "give one side, e.g. --img-size 384") in capsys.readouterr().err

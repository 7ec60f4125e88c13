"""params.yaml loading and validation: every bad value is refused with a message naming the key."""

import re
import warnings
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from clips4.cli import app, read_params, user_errors
from clips4.params import Params, ParamsError, load_params, params_from_dict

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_file_is_valid():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.unknowns == 64 and params.top_m == 32 and params.kappa == 10
    assert params.segments_per_view == 36 and params.train.memory_batches == 2
    assert params.dataset.selection_split == "tune"  # the embedded world has a split to choose on


def test_defaults_match_the_paper():
    params = params_from_dict({})
    assert (params.unknowns, params.top_m, params.kappa, params.segments_per_view) == (64, 32, 10.0, 36)
    assert params.fold is None and params.losses.semantic


@pytest.mark.parametrize(
    ("raw", "key", "hint"),
    [
        ({"unknowns": -1}, "unknowns", ">= 1"),
        ({"unknowns": "many"}, "unknowns", "integer"),
        ({"top_m": 0}, "top_m", ">= 1"),
        ({"kappa": 0}, "kappa", "> 0"),
        ({"fold": 4}, "fold", "[0, 3]"),
        ({"losses": {"semantic": "yes"}}, "losses.semantic", "true or false"),
        ({"losses": {"contrastive_pixels": -1}}, "losses.contrastive_pixels", ">= 0"),
        ({"losses": {"unknown_margin": -0.1}}, "losses.unknown_margin", "[0.0, 2.0]"),
        ({"losses": {"contrastive_own_segment": "dropped"}}, "losses.contrastive_own_segment", "positive, excluded"),
        ({"clip": {"dense_mode": "fancy"}}, "clip.dense_mode", "maskclip, clearclip"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name", "synth, voc"),
        ({"train": {"lr": -0.1}}, "train.lr", "> 0"),
        ({"unknwons": 3}, "unknwons", "unknown key"),
        ({"clip": {"pretrain": {"epochs": 0}}}, "clip.pretrain.epochs", ">= 1"),
        ({"synth": {"min_stuff": 5, "max_stuff": 2}}, "synth.min_stuff", "max_stuff"),
        ({"dataset": {"tune_split": "val"}}, "dataset.tune_split", "must differ"),
        ({"dataset": {"tune_split": "train"}}, "dataset.tune_split", "must differ"),
        ({"train": {"val_images": 10}}, "train.val_images", "unknown key"),  # renamed score_images
    ],
)
def test_bad_values_name_the_key(raw, key, hint):
    with pytest.raises(ParamsError) as err:
        params_from_dict(raw)
    message = str(err.value)
    assert message.startswith(key), message
    assert hint in message, message


def test_the_selection_split_is_tune_when_named_and_val_otherwise():
    assert params_from_dict({"dataset": {"tune_split": "tune"}}).dataset.selection_split == "tune"
    assert params_from_dict({}).dataset.selection_split == "val"  # a dataset without a tune split


def test_fold_accepts_null_and_index():
    assert params_from_dict({"fold": None}).fold is None
    assert params_from_dict({"fold": 2}).fold == 2


def test_overrides_and_file_name_in_message(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"unknowns": 64}))
    assert load_params(path, {"unknowns": 128}).unknowns == 128
    assert load_params(path, {"clip.dense_mode": "clearclip"}).clip.dense_mode == "clearclip"
    with pytest.raises(ParamsError, match=r"params\.yaml: unknowns"):
        load_params(path, {"unknowns": -1})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("unknowns: [1,\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_cli_exits_2_on_bad_params(tmp_path):
    """A command given a bad params file prints one line naming the key and exits with code 2."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"unknowns": -1}))

    probe_app = typer.Typer()

    @probe_app.command()
    @user_errors
    def probe(params: Path) -> None:
        read_params(params)

    result = CliRunner().invoke(probe_app, [str(path)])
    assert result.exit_code == 2
    assert "unknowns" in result.output and ">= 1" in result.output


def test_relative_dataset_root_is_relative_to_the_params_file(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"root": "data/synth"}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_params(path).dataset.root == str(project / "data" / "synth")
    monkeypatch.chdir(project)
    # Inside the current folder it stays relative, so records (store attributes, models/clips4.json) name no machine
    # folder; it is the same data either way.
    assert load_params("params.yaml").dataset.root == "data/synth"
    monkeypatch.chdir(tmp_path)
    assert load_params(path).dataset.root == "project/data/synth"
    path.write_text(yaml.safe_dump({"dataset": {"root": "/data/voc"}}))
    assert load_params(path).dataset.root == "/data/voc"


def test_eval_protocol_is_validated(tmp_path):
    assert params_from_dict({}).eval.protocol == "slide"
    assert params_from_dict({"eval": {"protocol": "whole"}}).eval.protocol == "whole"
    with pytest.raises(ParamsError, match=r"eval\.protocol: must be one of slide, whole"):
        params_from_dict({"eval": {"protocol": "crop"}})


def _float_keys(cls: type = Params, prefix: str = "") -> list[str]:
    """The dotted key of every float param (nested sections included)."""
    import dataclasses
    import typing

    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            keys += _float_keys(hint, f"{prefix}{name}.")
        elif hint is float or float in typing.get_args(hint):
            keys.append(prefix + name)
    return keys


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf"])
def test_every_float_param_refuses_nan_and_infinity_by_name(tmp_path, text):
    """`losses.semantic_weight: .nan` trained to the end with exit 0; `train.lr: .nan` ended in a torch traceback."""
    keys = _float_keys()
    assert {"losses.semantic_weight", "train.lr", "ucm.threshold", "kappa"} <= set(keys)
    path = tmp_path / "params.yaml"
    for key in keys:
        *parents, leaf = key.split(".")
        raw: dict = {"dataset": {"root": "data/synth"}}
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = None  # replaced in the text below: yaml.safe_dump cannot write .nan literally
        path.write_text(yaml.safe_dump(raw).replace(f"{leaf}: null", f"{leaf}: {text}"))
        with pytest.raises(ParamsError, match=rf"params\.yaml: {re.escape(key)}: must be a finite number") as err:
            load_params(path)
        assert "nan" in str(err.value) or "inf" in str(err.value), key


def test_cli_refuses_a_nan_param_in_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("dataset:\n  root: data/synth\ntrain:\n  lr: .nan\n")
    result = CliRunner().invoke(app, ["train", "--params", str(path)])
    assert result.exit_code == 2 and "train.lr: must be a finite number" in result.output
    assert "Traceback" not in result.output


def test_a_params_file_that_is_not_utf8_is_named_in_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes("dataset:\n  root: données\n".encode("latin-1"))
    with pytest.raises(ParamsError, match=r"params\.yaml: not UTF-8 text .*save it as UTF-8"):
        load_params(path)
    result = CliRunner().invoke(app, ["synth", "--params", str(path)])
    assert result.exit_code == 2 and str(path) in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_an_empty_params_file_is_an_error(tmp_path, text):
    """Every default used without a word is not what a user who emptied (or truncated) the file expects."""
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=r"params\.yaml: is empty .*dataset"):
        load_params(path)
    result = CliRunner().invoke(app, ["synth", "--params", str(path)])
    assert result.exit_code == 2 and "is empty" in result.output


def test_a_params_file_without_dataset_root_warns_and_names_the_default(tmp_path):
    from clips4.params import ParamsWarning

    path = tmp_path / "params.yaml"
    path.write_text("unknowns: 16\n")
    with pytest.warns(ParamsWarning, match=r"params\.yaml: sets no dataset\.root; using the default 'data/synth'"):
        assert load_params(path).unknowns == 16
    path.write_text("unknowns: 16\ndataset:\n  root: data/synth\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_params(path)  # no warning when it is set
        load_params(tmp_path / "params.yaml", {"dataset.root": "x"})

    probe_app = typer.Typer()

    @probe_app.command()
    @user_errors
    def probe(params: Path) -> None:
        read_params(params)

    path.write_text("unknowns: 16\n")
    result = CliRunner().invoke(probe_app, [str(path)])
    assert result.exit_code == 0
    assert "warning: " in result.output and "sets no dataset.root" in result.output
    assert "UserWarning" not in result.output  # one line, not Python's warning format

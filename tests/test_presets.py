"""Presets (pipeline/presets/, `clips4 params preset`): each file loads and validates, the command changes exactly the
preset's keys and keeps the params file's comments, a bad preset writes nothing, and the loss keys reach L_t."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from clips4.cli import app
from clips4.params import ParamsError, load_params, params_from_dict
from clips4.presets import apply_preset, dotted, list_presets, load_preset, merge
from clips4.train.objective import criterion_from_params

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "pipeline" / "presets"
NAMES = ["cocostuff171", "context59", "davis", "paper", "voc"]


def _preset(*args: str):
    return CliRunner().invoke(app, ["params", "preset", *args, "--presets-dir", str(PRESETS)])


def _shipped_params(folder: Path) -> Path:
    """A copy of the repository's params.yaml (read, never written) to apply presets to."""
    return Path(shutil.copy(REPO / "params.yaml", folder / "params.yaml"))


def test_the_presets_folder_holds_the_five_presets():
    assert [preset.name for preset in list_presets(PRESETS)] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_loads_and_validates_over_the_defaults(name):
    preset = load_preset(name, PRESETS)
    assert preset.description and "\n" not in preset.description
    params = params_from_dict(merge({}, preset.values, str(preset.path)))
    flat = dotted(params.to_dict())
    assert {key: flat[key] for key in preset.values} == preset.values  # every key is a params key, set as written


def test_presets_stack_on_the_shipped_params(tmp_path):
    path = _shipped_params(tmp_path)
    for name in ("voc", "paper", "davis"):
        apply_preset(load_preset(name, PRESETS), path)
    params = load_params(path)
    assert (params.dataset.name, params.contours.method, params.clip.model) == ("voc", "hed", "ViT-B-16")
    assert (params.train.model, params.train.iterations, params.eval.protocol) == ("pspnet-r50-d8", 20000, "whole")
    assert params.losses.use_unknowns and params.losses.contrastive_weight == 1.0 and params.train.lr == 0.001
    assert (params.video.name, params.video.stride) == ("davis", 8)
    assert params.dataset.tune_split is None


def test_the_paper_preset_is_the_papers_form():
    params = params_from_dict(merge({}, load_preset("paper", PRESETS).values, "paper"))
    losses, train = params.losses, params.train
    weights = (losses.contrastive_weight, losses.embedding_weight, losses.semantic_weight, losses.unknown_weight)
    assert weights == (1.0, 1.0, 1.0, 1.0) and losses.use_unknowns and losses.segments == "kmeans"
    assert (params.unknowns, params.top_m, params.kappa, params.segments_per_view) == (64, 32, 10.0, 36)
    assert params.prototypes.source == "clip_kmeans"
    assert (train.lr, train.lr_power, train.batch_size, train.memory_batches) == (0.001, 0.9, 8, 2)
    assert (train.color_jitter, train.blur, train.crop_scale_min) == (1.0, True, 0.08)


def test_the_command_changes_the_presets_keys_only_and_keeps_the_comments(tmp_path):
    path = _shipped_params(tmp_path)
    before_text = path.read_text()
    before = dotted(yaml.safe_load(before_text))
    result = _preset("paper", "--params", str(path))
    assert result.exit_code == 0, result.output
    after_text = path.read_text()
    after = dotted(yaml.safe_load(after_text))
    preset = load_preset("paper", PRESETS)
    changed = {key for key in after if after[key] != before.get(key)}
    assert changed and changed <= set(preset.values)
    assert {key: after[key] for key in preset.values} == preset.values
    assert f"{len(changed)} values changed" in result.output
    assert "losses.contrastive_weight: 0.1 -> 1.0" in result.output
    assert "losses.unknown_margin: 0.1 -> 0.0" in result.output
    # one changed line per changed value, and every comment line as it was
    diff = [line for line in difflib.ndiff(before_text.splitlines(), after_text.splitlines()) if line[:2] == "+ "]
    assert len(diff) == len(changed)
    assert [line for line in after_text.splitlines() if line.lstrip().startswith("#")] == [
        line for line in before_text.splitlines() if line.lstrip().startswith("#")
    ]
    load_params(path)
    again = _preset("paper", "--params", str(path))
    assert again.exit_code == 0 and "0 values changed" in again.output and path.read_text() == after_text


def test_list_names_every_preset_with_its_description():
    result = _preset("--list")
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines()]
    assert listed == NAMES
    assert load_preset("paper", PRESETS).description in result.output


def test_an_unknown_preset_exits_2_naming_the_folder_and_the_presets(tmp_path):
    (tmp_path / "params.yaml").write_text("dataset: {name: synth, root: data/synth}\n")
    result = _preset("papr", "--params", str(tmp_path / "params.yaml"))
    assert result.exit_code == 2
    assert str(PRESETS) in result.output and "'papr'" in result.output and ", ".join(NAMES) in result.output
    assert "Traceback" not in result.output


def test_a_name_or_list_is_required():
    assert _preset().exit_code == 2
    assert _preset("paper", "--list").exit_code == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("losses.contrastive_wieght: 1.0", "losses.contrastive_wieght: unknown key"),
        ("train.lr: -1", "train.lr: must be a number > 0"),
        ("train: {crop_scale_min: 0.9, crop_scale_max: 0.5}", "train.crop_scale_min: must be <="),
        ("seed.x: 1", "seed.x: seed is a value"),
    ],
)
def test_a_bad_preset_is_refused_naming_its_file_and_key_and_nothing_is_written(tmp_path, values, message):
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "bad.yaml").write_text(f"description: a bad one\nset: {{{values}}}\n")
    params = tmp_path / "params.yaml"
    params.write_text("# the project's params\ndataset: {name: synth, root: data/synth}  # kept\nseed: 0\n")
    before = params.read_bytes()
    result = CliRunner().invoke(app, ["params", "preset", "bad", "--params", str(params), "--presets-dir", str(folder)])
    assert result.exit_code == 2, result.output
    assert str(folder / "bad.yaml") in result.output and message in result.output, result.output
    assert params.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "presets"]


def test_an_invalid_params_file_is_named_before_the_preset_is_blamed(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("dataset: {name: synth, root: data/synth}\nunknowns: -1\n")
    with pytest.raises(ParamsError, match=r"params\.yaml: unknowns: must be an integer >= 1"):
        apply_preset(load_preset("paper", PRESETS), params)


def test_a_preset_file_must_hold_a_description_and_set(tmp_path):
    (tmp_path / "odd.yaml").write_text("losses.semantic: true\n")
    with pytest.raises(ParamsError, match=r"odd\.yaml: a preset is a mapping of exactly description and set"):
        load_preset("odd", tmp_path)


def test_merge_takes_dotted_and_nested_keys_and_adds_missing_sections():
    document = {"train": {"lr": 0.003, "iterations": 200}}
    values = dotted({"train.lr": 0.001, "losses": {"contrastive_pixels": 512}})
    assert values == {"train.lr": 0.001, "losses.contrastive_pixels": 512}
    merged = merge(document, values, "preset")
    assert merged == {"train": {"lr": 0.001, "iterations": 200}, "losses": {"contrastive_pixels": 512}}


def test_the_loss_keys_reach_the_contrastive_loss():
    known, unknown = torch.randn(5, 8), torch.randn(7, 8)
    default = criterion_from_params(params_from_dict({}), known, unknown)
    assert (default.contrastive.sampled_pixels, default.contrastive.exclude_own_segment) == (2048, False)
    raw = {"losses": {"contrastive_pixels": 100, "contrastive_own_segment": "excluded", "use_unknowns": False}}
    configured = criterion_from_params(params_from_dict(raw), known, unknown)
    assert (configured.contrastive.sampled_pixels, configured.contrastive.exclude_own_segment) == (100, True)
    assert configured.unknown.shape[0] == 0 and default.unknown.shape[0] == 7  # use_unknowns drops them
    assert default.unknown_margin == 0.0
    assert (
        criterion_from_params(params_from_dict({"losses": {"unknown_margin": 0.2}}), known, unknown).unknown_margin
        == 0.2
    )

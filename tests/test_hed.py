"""HED detector: shapes, both pytorch-hed key layouts, a hand-set edge configuration, and weight errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clips4.errors import Clips4Error
from clips4.params import ContourParams
from clips4.superpixels.hed import HedNet, detect_hed, load_hed


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hed") / "random.pt"
    torch.save(HedNet().state_dict(), path)
    return path


@pytest.mark.parametrize("shape", [(33, 47), (20, 21)])
def test_random_weights_give_map_of_input_size(weights: Path, shape: tuple[int, int]) -> None:
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    cmap = detect_hed(img, ContourParams(method="hed", hed_weights=str(weights)))
    assert cmap.strength.shape == shape and cmap.orientation.shape == shape
    assert cmap.strength.min() >= 0.0 and cmap.strength.max() <= 1.0 and cmap.strength.max() > 0.0
    assert cmap.orientation.min() >= 0.0 and cmap.orientation.max() < np.pi


@pytest.mark.parametrize("prefix", ["module", "net"])
def test_loads_pytorch_hed_key_layouts(tmp_path: Path, prefix: str) -> None:
    source = HedNet()
    state = {prefix + k[len("net") :]: v for k, v in source.state_dict().items()}
    assert "netVggOne.0.weight" in source.state_dict() and "netCombine.0.weight" in source.state_dict()
    path = tmp_path / "network-bsds500.pytorch"
    torch.save(state, path)
    loaded = load_hed(path)
    assert torch.equal(loaded.netScoreFiv.weight, source.netScoreFiv.weight)


def test_hand_set_side_output_finds_square_edge(tmp_path: Path) -> None:
    """conv1_1 = horizontal/vertical luminance differences, score-one = their |.| via ReLU, fused alone."""
    net = HedNet()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        conv = net.netVggOne[0]
        dx = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
        for k, kern in enumerate([dx, -dx, dx.T, -dx.T]):  # +- so that ReLU keeps both edge signs
            conv.weight[k] = kern.expand(3, 3, 3)
        net.netVggOne[2].weight[:4, :4] = torch.eye(4)[:, :, None, None] * torch.tensor(
            [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
        )
        net.netScoreOne.weight[0, :4] = 1.0
        net.netCombine[0].weight[0, 0] = 1.0
        net.netCombine[0].bias[0] = -5.0
    path = tmp_path / "edge.pt"
    torch.save(net.state_dict(), path)
    img = np.full((32, 32, 3), 30, dtype=np.uint8)
    img[8:24, 8:24] = 220
    cmap = detect_hed(img, ContourParams(method="hed", hed_weights=str(path)))
    # The zero padding of the mean-subtracted input makes the image frame an edge too: look inside it.
    ys, xs = np.nonzero(cmap.strength[3:-3, 3:-3] > 0.5)
    ys, xs = ys + 3, xs + 3
    assert len(ys) > 20
    d = np.minimum.reduce([np.abs(ys - 7.5), np.abs(ys - 23.5), np.abs(xs - 7.5), np.abs(xs - 23.5)])
    assert d.max() <= 1.0
    assert cmap.strength[16, 16] < 0.1 and cmap.strength[2, 2] < 0.1


def test_missing_weights_file_is_a_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pytorch"
    with pytest.raises(Clips4Error, match=r"contours\.hed_weights") as err:
        load_hed(missing)
    assert str(missing) in str(err.value) and "network-bsds500.pytorch" in str(err.value)


def test_unset_weights_is_a_user_error() -> None:
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(Clips4Error, match=r"contours\.hed_weights"):
        detect_hed(img, ContourParams(method="hed", hed_weights=None))


@pytest.mark.parametrize("content", [b"not a torch file", None])
def test_corrupt_or_wrong_weights_are_user_errors(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"conv.weight": torch.zeros(2, 2)}, path)  # a valid file of the wrong network
    else:
        path.write_bytes(content)
    with pytest.raises(Clips4Error, match=r"contours\.hed_weights") as err:
        load_hed(path)
    assert str(path) in str(err.value)

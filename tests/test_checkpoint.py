"""Checkpoint loading: formats, wrappers, prefixes, window-length change, wrong models, resolution order."""

import pytest
import torch

from cotracker3 import CheckpointError, CoTrackerPredictor, CoTrackerThreeOffline, CoTrackerThreeOnline, build_model, load_weights
from cotracker3 import checkpoint as ckpt

SMALL = dict(latent_dim=32, hidden_size=48, corr_hidden=32, num_virtual_tracks=4, space_depth=1, model_resolution=(64, 64))


def _model(cls=CoTrackerThreeOffline, **kw):
    torch.manual_seed(0)
    return cls(**{**SMALL, **kw})


@pytest.mark.parametrize("wrap", ["flat", "model", "state_dict", "module"])
def test_pth_wrappers_load(tmp_path, wrap):
    src = _model(window_len=8)
    sd = src.state_dict()
    obj = {"flat": sd, "model": {"model": sd}, "state_dict": {"state_dict": sd},
           "module": {f"module.{k}": v for k, v in sd.items()}}[wrap]
    torch.save(obj, tmp_path / "w.pth")
    dst = build_model("offline", str(tmp_path / "w.pth"), window_len=8, **SMALL)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    assert "explicit checkpoint" in dst.checkpoint_source


def test_safetensors_roundtrip_with_config(tmp_path):
    src = _model(window_len=8)
    ckpt.save_weights(src, tmp_path / "w.safetensors", config={**SMALL, "window_len": 8}, half=True)
    dst = build_model("offline", str(tmp_path / "w.safetensors"))  # config comes from the file
    assert dst.latent_dim == 32 and dst.window_len == 8
    for k, v in src.state_dict().items():
        assert torch.allclose(v, dst.state_dict()[k], atol=1e-2 * (1 + v.abs().max())), k


def test_window_length_change_regenerates_time_embedding():
    src = _model(CoTrackerThreeOnline, window_len=16)
    dst = _model(CoTrackerThreeOnline, window_len=8)
    load_weights(dst, src.state_dict())
    assert dst.time_emb.shape[1] == 8
    assert torch.equal(dst.updateformer.virual_tracks, src.updateformer.virual_tracks)


def test_wrong_model_names_missing_and_unexpected_keys():
    model = _model(window_len=8)
    sd = {"encoder.weight": torch.zeros(3), **{k: v for k, v in model.state_dict().items() if "corr_mlp" not in k}}
    with pytest.raises(CheckpointError, match=r"missing keys: corr_mlp.*unexpected keys: encoder.weight"):
        load_weights(model, sd)


def test_wrong_shapes_are_named():
    a = _model(window_len=8)
    b = _model(window_len=8, hidden_size=96)
    with pytest.raises(CheckpointError, match="shapes do not fit"):
        load_weights(a, b.state_dict())


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        ckpt.read_state_dict(tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.read_state_dict(tmp_path / "none.pth")
    torch.save({"a": 1}, tmp_path / "nontensor.pth")
    with pytest.raises(CheckpointError, match="state dict of tensors"):
        ckpt.read_state_dict(tmp_path / "nontensor.pth")


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(ckpt, "EMBEDDED_DIR", tmp_path / "embedded")
    # Nothing anywhere and no download: a clear message saying where to put the file.
    with pytest.raises(CheckpointError, match="scaled_offline.pth"):
        ckpt.resolve_checkpoint("offline", "default", allow_download=False)
    # A failing download falls through to the embedded weights.
    (tmp_path / "embedded").mkdir()
    (tmp_path / "embedded" / ckpt.EMBEDDED_FILES["offline"]).write_bytes(b"x")
    monkeypatch.setattr(ckpt, "OFFICIAL_URL", (tmp_path / "no-such-dir" / "{}").as_uri())
    path, source = ckpt.resolve_checkpoint("offline", "default", allow_download=True)
    assert path.parent == tmp_path / "embedded" and "own small" in source
    # The download branch, served from a local file URL, lands in the hub cache.
    served = tmp_path / "served"
    served.mkdir()
    torch.save(_model(window_len=8).state_dict(), served / "scaled_offline.pth")
    monkeypatch.setattr(ckpt, "OFFICIAL_URL", served.as_uri() + "/{}")
    path, source = ckpt.resolve_checkpoint("offline", "default", allow_download=True)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "scaled_offline.pth" and "downloaded" in source
    # The hub cache wins from then on, without a download.
    path, source = ckpt.resolve_checkpoint("offline", "default", allow_download=False)
    assert "hub cache" in source
    # An explicit path wins over everything; a missing explicit path is an error.
    assert ckpt.resolve_checkpoint("offline", str(served / "scaled_offline.pth"))[0] == served / "scaled_offline.pth"
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.resolve_checkpoint("offline", str(tmp_path / "missing.pth"))


def test_predictor_reports_its_weights(tmp_path):
    src = _model(window_len=8)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    pred = CoTrackerPredictor(checkpoint=str(tmp_path / "w.pth"), window_len=8, **SMALL)
    assert str(tmp_path / "w.pth") in pred.checkpoint_source
    assert "random" in CoTrackerPredictor(checkpoint=None, window_len=8, **SMALL).checkpoint_source


def test_predictors_keep_the_stored_window_unless_told(tmp_path):
    ckpt.save_weights(_model(CoTrackerThreeOnline, window_len=8), tmp_path / "on.safetensors", config={**SMALL, "window_len": 8})
    from cotracker3 import CoTrackerOnlinePredictor

    assert CoTrackerOnlinePredictor(checkpoint=str(tmp_path / "on.safetensors")).step == 4
    assert CoTrackerOnlinePredictor(checkpoint=str(tmp_path / "on.safetensors"), window_len=12).step == 6
    assert CoTrackerOnlinePredictor().model.window_len == 16 and CoTrackerPredictor().model.window_len == 60


def test_from_model_wraps_without_copying():
    from cotracker3 import CoTrackerOnlinePredictor

    model = _model(CoTrackerThreeOnline, window_len=8)
    pred = CoTrackerOnlinePredictor.from_model(model)
    assert pred.model is model and pred.step == 4 and pred.queries is None
    assert CoTrackerPredictor.from_model(_model(window_len=8)).interp_shape == SMALL["model_resolution"]


class _Payload:
    """Unpickling this would create a file: the proof that a checkpoint ran code."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.target),))


@pytest.mark.parametrize("how", ["torch.save", "pickle", "wrapped"])
def test_hostile_pickle_never_runs(tmp_path, how):
    import pickle

    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"model": {"w": torch.zeros(2), "x": _Payload(target)}} if how == "wrapped" else {"w": _Payload(target)}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=4))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError) as err:
        build_model("offline", str(path), window_len=8, **SMALL)
    msg = str(err.value)
    assert "unpickle" in msg and "weights_only=False" not in msg and "\n" not in msg, msg
    assert not target.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", "half"])
def test_empty_and_truncated_pth_say_so(tmp_path, content):
    path = tmp_path / "w.pth"
    if content == "half":
        torch.save(_model(window_len=8).state_dict(), tmp_path / "full.pth")
        data = (tmp_path / "full.pth").read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        ckpt.read_state_dict(path)
    msg = str(err.value)
    assert ("is empty (0 bytes)" in msg) if not content else ("truncated or not a PyTorch checkpoint (" in msg), msg
    assert not msg.rstrip().endswith(":") and "\n" not in msg


def test_safetensors_with_bad_metadata(tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in _model(window_len=8).state_dict().items()}
    bad_configs = {"unknown": ('{"window_len": 8, "fancy_layers": 3}', "unknown model config key.*'fancy_layers'"),
                   "list": ("[1, 2]", "must be a JSON object"), "json": ("{not json", "not valid JSON"),
                   "type": ('{"window_len": 8, "latent_dim": "wide"}', "rejects its config")}
    for name, (config, match) in bad_configs.items():
        save_file(state, str(tmp_path / f"{name}.safetensors"), metadata={"config": config})
        with pytest.raises(CheckpointError, match=match):
            build_model("offline", str(tmp_path / f"{name}.safetensors"))
    data = (tmp_path / "unknown.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        build_model("offline", str(tmp_path / "cut.safetensors"))
    (tmp_path / "zero.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        build_model("offline", str(tmp_path / "zero.safetensors"))

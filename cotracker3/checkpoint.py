"""Checkpoint loading: the one place that reads weights, for every model and pipeline.

Accepts the official `scaled_offline.pth` / `scaled_online.pth` unchanged, our own `.safetensors`
files (which carry the model config in their metadata), flat state dicts and `{"model": ...}` /
`{"state_dict": ...}` wrappers, with or without a DistributedDataParallel `module.` prefix.
`.pth` files are read with `torch.load(weights_only=True)`: a file that holds anything beyond tensors and
plain containers is refused, never unpickled, so a planted checkpoint cannot run code.
torch and the models are imported only by the functions that need tensors: finding the weights, reading their
stored scores and `CheckpointError` cost no torch import (~2 s), which a run that ends up with Lucas-Kanade never needs.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import pickle
import re
import sys
import urllib.request
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple, Union

if TYPE_CHECKING:
    from .model import CoTrackerThreeBase

log = logging.getLogger(__name__)

OFFICIAL_FILES = {"offline": "scaled_offline.pth", "online": "scaled_online.pth"}
OFFICIAL_URL = "https://huggingface.co/facebook/cotracker3/resolve/main/{}"
EMBEDDED_DIR = Path(__file__).parent / "weights"
EMBEDDED_FILES = {"offline": "cotracker3_small_offline.safetensors", "online": "cotracker3_small_online.safetensors"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read, or does not fit the model."""


def _reason(e: BaseException) -> str:
    """The first informative line of an exception (some, like EOFError, carry no text at all)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0].split(". ")[0].rstrip(".") if lines else type(e).__name__


def _refused_object(e: BaseException) -> str:
    """What torch's weights-only unpickler refused, without its advice to switch the protection off."""
    m = re.search(r"(Unsupported [^\n]*|unsupported GLOBAL \S+)", str(e))
    return m.group(1).rstrip(".") if m else "a Python object"


def _load_pth(path: Path):
    """torch.load(weights_only=True) with messages that say what is wrong with the file."""
    import torch

    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # e.g. pickle-protocol notes: the error below says what matters
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = _refused_object(e)
        if "GLOBAL" in what:
            raise CheckpointError(f"checkpoint {path} holds pickled objects other than tensors ({what}); refusing to "
                                  "unpickle it, since that could run code: save a plain state dict or .safetensors") from e
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): corrupt or not a plain PyTorch state dict ({what}); "
                              "objects other than tensors are never unpickled, since that could run code") from e
    except Exception as e:  # EOFError, zip errors, ...
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): truncated or not a PyTorch checkpoint "
                              f"({_reason(e)})") from e


def _read_safetensors(path: Path) -> Tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except Exception as e:  # header errors, truncation, ...
        raise CheckpointError(f"cannot read checkpoint {path} ({path.stat().st_size} bytes): truncated or not a "
                              f"safetensors file ({_reason(e)})") from e
    try:
        config = json.loads(meta.get("config", "{}"))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: its metadata 'config' is not valid JSON ({_reason(e)})") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path}: its metadata 'config' must be a JSON object, got {type(config).__name__}")
    return state, config


def read_state_dict(path: Union[str, Path]) -> Tuple[dict, dict]:
    """Read a checkpoint file -> (state_dict, config). `config` is {} unless the file stores one."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    config = {}
    if path.suffix == ".safetensors":
        state, config = _read_safetensors(path)
    else:
        state = _load_pth(path)
    if isinstance(state, dict) and "config" in state and isinstance(state["config"], dict):
        config = state["config"]
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}, config


def load_weights(model: CoTrackerThreeBase, state_dict: dict) -> CoTrackerThreeBase:
    """Load strictly; regenerate `time_emb` for another window length; name missing/unexpected keys on mismatch."""
    from .model import sincos_time_embedding

    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    own = model.state_dict()
    if "time_emb" in state and state["time_emb"].shape != own["time_emb"].shape:
        state["time_emb"] = sincos_time_embedding(model.window_len, model.input_dim)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        def show(keys):
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "") if keys else "none"
        raise CheckpointError(
            f"checkpoint does not fit {type(model).__name__}: missing keys: {show(missing)}; unexpected keys: {show(unexpected)}"
        )
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if state[k].shape != own[k].shape]
    if wrong:
        raise CheckpointError(f"checkpoint shapes do not fit {type(model).__name__}: " + "; ".join(wrong[:5]))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


def hub_cache_dir() -> Path:
    """Where torch.hub stores downloaded checkpoints ($TORCH_HOME/hub/checkpoints), found without importing torch
    the way torch.hub.get_dir does; a torch.hub.set_dir can only have happened once torch is loaded."""
    if "torch" in sys.modules:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints"
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def read_metadata(path: Union[str, Path]) -> dict:
    """The string metadata of a `.safetensors` file, read from its header without loading any tensor
    (framework numpy: "pt" would import torch just to read the header)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e


def score_vs_lk(path: Union[str, Path]) -> Optional[list]:
    """The weights' model-card scores against Lucas-Kanade on the same evaluation, or None if not stored.

    A list of {"metric", "ours", "lk", "higher_is_better"} (the `score_vs_lk` metadata key, JSON).
    """
    text = read_metadata(path).get("score_vs_lk") if Path(path).suffix == ".safetensors" else None
    if not text:
        return None
    try:
        scores = json.loads(text)
        return [{"metric": str(s["metric"]), "ours": float(s["ours"]), "lk": float(s["lk"]),
                 "higher_is_better": bool(s.get("higher_is_better", True))} for s in scores]
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: malformed score_vs_lk metadata: {e}") from e


def _host_resolves(url: str, timeout: float = 5.0) -> bool:
    """Whether the URL's host name resolves within `timeout` s (name lookups ignore socket timeouts)."""
    import socket
    import threading
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return True  # a local file URL needs no name lookup
    found = []

    def lookup():
        try:
            socket.getaddrinfo(parsed.hostname, 443)
            found.append(True)
        except OSError:
            pass

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(timeout)
    return bool(found)


def download_allowed() -> bool:
    """Downloads are off when SFM_TRACKS_NO_DOWNLOAD is set to anything but '' or '0'."""
    return os.environ.get("SFM_TRACKS_NO_DOWNLOAD", "") in ("", "0")


def official_checkpoint(kind: str, allow_download: Optional[bool] = None) -> Optional[Tuple[Path, str]]:
    """The official weights -> (path, source): from the torch hub cache, else downloaded; None if neither.

    A download is tried only when allowed and the host resolves; it is bounded by a 10 s socket timeout.
    """
    cached = hub_cache_dir() / OFFICIAL_FILES[kind]
    if cached.is_file():
        return cached, f"official CoTracker3 {kind} weights from the torch hub cache ({cached})"
    if allow_download is None:
        allow_download = download_allowed()
    url = OFFICIAL_URL.format(OFFICIAL_FILES[kind])
    if not allow_download or not _host_resolves(url):
        return None
    tmp = cached.with_suffix(".part")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=10) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        tmp.replace(cached)
        return cached, f"official CoTracker3 {kind} weights downloaded from {url}"
    except Exception as e:  # no network here is normal: the caller falls back
        tmp.unlink(missing_ok=True)
        log.info("could not download %s (%s)", url, e)
        return None


def resolve_checkpoint(kind: str, checkpoint: Optional[str] = "default", allow_download: Optional[bool] = None) -> Tuple[Path, str]:
    """Find the weights to use -> (path, human-readable source).

    Order: an explicit path; the official file in the torch hub cache; a download of the official
    file (when the network allows it); the small weights shipped with this package.
    """
    if kind not in OFFICIAL_FILES:
        raise ValueError(f"kind must be 'offline' or 'online', got {kind!r}")
    if checkpoint not in (None, "default"):
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        return path, f"explicit checkpoint {path}"
    official = official_checkpoint(kind, allow_download)
    if official is not None:
        return official
    embedded = EMBEDDED_DIR / EMBEDDED_FILES[kind]
    if embedded.is_file():
        return embedded, f"sfm-tracks' own small {kind} weights ({embedded.name}, trained on synthetic video)"
    raise CheckpointError(
        f"no CoTracker3 {kind} weights found: pass a checkpoint path, or put the official "
        f"{OFFICIAL_FILES[kind]} into {hub_cache_dir()} (from {OFFICIAL_URL.format(OFFICIAL_FILES[kind])})"
    )


def model_config_keys(cls) -> set:
    """Constructor keywords of a model class, following **kwargs up to the base classes."""
    import torch

    keys = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is torch.nn.Module:
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        keys |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return keys


def build_model(kind: str, checkpoint: Optional[str] = None, window_len: Optional[int] = None, **config) -> CoTrackerThreeBase:
    """Construct the offline/online model; load `checkpoint` (None: random init, 'default': resolve)."""
    from .model import CoTrackerThreeOffline, CoTrackerThreeOnline

    cls = {"offline": CoTrackerThreeOffline, "online": CoTrackerThreeOnline}[kind]
    if checkpoint is None:
        if window_len is not None:
            config["window_len"] = window_len
        return cls(**config)
    path, source = resolve_checkpoint(kind, checkpoint)
    state, stored = read_state_dict(path)
    known = model_config_keys(cls)
    unknown = sorted(set(stored) - known)
    if unknown:
        raise CheckpointError(f"checkpoint {path} stores unknown model config key(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(known))}")
    config = {**stored, **config}
    if window_len is not None:
        config["window_len"] = window_len
    try:
        model = cls(**config)
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path}: the model rejects its config {stored}: {_reason(e)}") from e
    model = load_weights(model, state)
    model.checkpoint_source = source
    log.info("loaded %s", source)
    return model


def save_weights(model: CoTrackerThreeBase, path: Union[str, Path], config: dict, half: bool = False) -> None:
    """Write a `.safetensors` file with the constructor config in its metadata (atomic)."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"config": json.dumps(config)})
    tmp.replace(path)


def write_metadata(path: Union[str, Path], **entries: str) -> None:
    """Add/replace string metadata of a `.safetensors` file; tensors are rewritten bit-identical (atomic)."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    meta = {**read_metadata(path), **entries}
    tmp = path.with_name(path.name + ".tmp")
    save_file(load_file(str(path)), str(tmp), metadata=meta)
    os.chmod(tmp, path.stat().st_mode & 0o777)  # safetensors creates files 0600
    tmp.replace(path)

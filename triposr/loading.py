"""Loading weights: a local folder or a hub id, safetensors or a weights-only torch checkpoint.

`load_model(source)` accepts

* a folder holding `config.yaml` and `model.safetensors` or `model.ckpt`;
* `"demo"`: the small model bundled in `triposr/demo/` (trained on synthetic products, docs/training.md);
* a Hugging Face hub id such as `stabilityai/TripoSR`, resolved with huggingface_hub (its cache and
  `HF_HUB_OFFLINE` respected).

`fetch_model(hub_id)` downloads a hub model into the Hugging Face cache (what `asset3d model fetch` and
`asset3d demo` run).

Weights are read with safetensors or `torch.load(weights_only=True)`, never with a full unpickler; a
checkpoint that would run code is refused. Missing weights raise `ModelNotAvailable`, whose message
names what is missing and the command that fetches it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from triposr.config import load_config_file
from triposr.devices import pick_device, pick_dtype, tune_cpu_allocator
from triposr.model import TSR

OFFICIAL_HUB_ID = "stabilityai/TripoSR"
CONFIG_NAME = "config.yaml"
WEIGHT_NAMES = ("model.safetensors", "model.ckpt")
DEMO_SOURCE = "demo"  # the small model bundled in triposr/demo/ (docs/training.md)
DEMO_DIR = Path(__file__).with_name("demo")


class ModelNotAvailable(RuntimeError):
    """The weights (or config) of a model source cannot be found or fetched."""

    reason = "model_unavailable"
    transient = False


class UnsafeCheckpoint(ValueError):
    """A checkpoint that cannot be read without running code from it."""

    reason = "unsafe_checkpoint"
    transient = False


def fetch_command(hub_id: str) -> str:
    return f"asset3d model fetch {hub_id}"


def _hash_file(path: str | Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


#: SHA-256 of weight files by (real path, size, mtime, inode): a 1.7 GB checkpoint is hashed once per machine
#: (about 2-5 s), not by every process that loads or identifies it. ``TRIPOSR_NO_HASH_CACHE=1`` turns it off.
_hashes: dict[tuple[str, int, int, int], str] = {}


def _hash_cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "triposr" / "sha256.json"


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file's bytes, remembered per process and on disk for files that have not changed
    since (same size, modification time and inode)."""
    real = Path(path).resolve()
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _hashes:
        return _hashes[key]
    use_disk = os.environ.get("TRIPOSR_NO_HASH_CACHE", "") in ("", "0") and st.st_size >= 1 << 20
    cache_file = _hash_cache_file()
    record = f"{key[0]}|{key[1]}|{key[2]}|{key[3]}"
    if use_disk:
        try:
            known = json.loads(cache_file.read_text())
            if isinstance(known, dict) and isinstance(known.get(record), str):
                _hashes[key] = known[record]
                return _hashes[key]
        except (OSError, ValueError):
            pass
    value = _hash_file(real, block)
    _hashes[key] = value
    if use_disk:
        try:
            known = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
            known = known if isinstance(known, dict) else {}
            known[record] = value
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known))
            tmp.replace(cache_file)
        except OSError:  # a read-only home: hashing again next time is only slower
            pass
    return value


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a weights-only torch checkpoint (a `state_dict` key is unwrapped)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpoint(
            f"{path}: refused, the checkpoint holds objects that only a full unpickler could build "
            f"(it could run code); convert it to safetensors from a trusted environment ({exc})"
        ) from None
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UnsafeCheckpoint(f"{path}: not a state dict of tensors")
    return dict(data)


def _folder_files(folder: Path) -> tuple[Path, Path]:
    config = folder / CONFIG_NAME
    if not config.is_file():
        raise ModelNotAvailable(f"model folder {folder} has no {CONFIG_NAME}")
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return config, folder / name
    raise ModelNotAvailable(f"model folder {folder} has no weights ({' or '.join(WEIGHT_NAMES)})")


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` asks huggingface_hub to stay off the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    """The hub's base URL: `HF_ENDPOINT`, else huggingface_hub's default."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint (`HF_ENDPOINT`) opens within `timeout` seconds.

    huggingface_hub retries a failed request with back-off for about 23 s before it falls back to its
    cache, on every file; this check lets a machine without a route load cached weights at once and
    fail at once when they are not cached. Behind a proxy (`HTTPS_PROXY`, ...) the endpoint is not
    dialled directly, so the check is left to huggingface_hub (True).
    """
    from urllib.parse import urlsplit

    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    url = urlsplit(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_files(hub_id: str) -> tuple[Path, Path]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    told_offline = hub_offline()
    offline = told_offline or not hub_reachable()
    try:
        config = Path(hf_hub_download(hub_id, CONFIG_NAME, local_files_only=offline, endpoint=hub_endpoint()))
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        reason = "HF_HUB_OFFLINE is set" if told_offline else "the hub cannot be reached"
        raise ModelNotAvailable(
            f"model {hub_id!r} is not in the local cache and {reason} "
            f"({type(exc).__name__}); on a machine with network run `{fetch_command(hub_id)}` "
            f"(or `hf download {hub_id} {CONFIG_NAME} model.ckpt`), or pass a folder holding "
            f"{CONFIG_NAME} and model.ckpt / model.safetensors"
        ) from None
    errors = []
    for name in WEIGHT_NAMES:
        try:
            return config, Path(hf_hub_download(hub_id, name, local_files_only=offline, endpoint=hub_endpoint()))
        except (EntryNotFoundError, LocalEntryNotFoundError, OSError, ValueError) as exc:
            errors.append(f"{name}: {type(exc).__name__}")
    raise ModelNotAvailable(
        f"model {hub_id!r}: config found but no weights ({'; '.join(errors)}); "
        f"run `{fetch_command(hub_id)}` where the hub can be reached"
    )


@contextlib.contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """huggingface_hub's download bars as asked (`HF_HUB_DISABLE_PROGRESS_BARS` keeps the last word)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if show or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


def fetch_model(hub_id: str, progress: bool = True) -> tuple[Path, Path]:
    """Download a hub model's config.yaml and weights into the Hugging Face cache; (config, weights) paths.

    The weights are the first of `WEIGHT_NAMES` the repo holds (``stabilityai/TripoSR`` has ``model.ckpt``).
    Files already in the cache with the hub's ETag are not downloaded again. huggingface_hub draws a
    progress bar per file on stderr unless ``progress`` is False.

    Raises
    ------
    ModelNotAvailable
        ``HF_HUB_OFFLINE`` is set, the endpoint (`hub_endpoint`) does not accept a connection within
        `hub_reachable`'s 3 s, or a download fails; the message is one line that says which.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    if hub_offline():
        raise ModelNotAvailable(f"HF_HUB_OFFLINE is set, so {hub_id} cannot be downloaded")
    if not hub_reachable():
        raise ModelNotAvailable(
            f"cannot open a connection to {hub_endpoint()} (no route, DNS or firewall), so {hub_id} cannot be downloaded here"
        )
    missing: list[str] = []
    try:
        with _progress_bars(progress):
            config = Path(hf_hub_download(hub_id, CONFIG_NAME, endpoint=hub_endpoint()))
            for name in WEIGHT_NAMES:
                try:
                    return config, Path(hf_hub_download(hub_id, name, endpoint=hub_endpoint()))
                except RemoteEntryNotFoundError:  # the repo answered: no such file
                    missing.append(name)
    except Exception as exc:  # any network or hub failure (huggingface_hub and httpx errors) is reported as one line
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ModelNotAvailable(f"could not download {hub_id} from {hub_endpoint()} ({type(exc).__name__}: {detail})") from None
    raise ModelNotAvailable(f"{hub_id} on {hub_endpoint()} has {CONFIG_NAME} but no weights ({' or '.join(missing)})")


def resolve_source(source: str | os.PathLike[str]) -> tuple[Path, Path, str]:
    """(config path, weights path, model id) for a folder, a hub id or "demo" (the bundled model)."""
    path = DEMO_DIR if str(source) == DEMO_SOURCE else Path(source).expanduser()
    if path.is_dir():
        config, weights = _folder_files(path)
        return config, weights, str(path.resolve())
    text = str(source)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise ModelNotAvailable(f"model source {text!r} is neither a model folder nor a hub id like {OFFICIAL_HUB_ID}")
    config, weights = _hub_files(text)
    return config, weights, text


def load_model(
    source: str | os.PathLike[str],
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    cast_weights: bool = True,
) -> TSR:
    """Build the model from `source`'s config and load its weights strictly.

    Parameters
    ----------
    source : a folder with config.yaml + model.safetensors / model.ckpt, or a hub id
    device : "cuda", "cpu", ... or None / "auto" (cuda, then mps, then cpu)
    dtype : "fp32", "bf16", "fp16" or None / "auto"; non-fp32 runs under autocast
    cast_weights : for non-fp32, store the encoder's weights in that dtype (`TSR.cast_encoder_weights`);
        False keeps every weight fp32 (as loaded)

    On the CPU this also keeps freed activation memory in the process heap
    (`triposr.devices.tune_cpu_allocator`): repeated forward passes stop page-faulting.
    """
    config_path, weights_path, model_id = resolve_source(source)
    cfg = load_config_file(config_path)
    with torch.device("meta"):
        model = TSR.from_config(cfg)
    state = read_state_dict(weights_path)
    dev = pick_device(device)
    model.to_empty(device=dev)
    model.load_state_dict(state, strict=True)
    model.reset_buffers()
    model.eval()
    model.compute_dtype = pick_dtype(dtype, dev)
    if cast_weights and model.compute_dtype != torch.float32:
        model.cast_encoder_weights()
    if dev.type == "cpu":
        tune_cpu_allocator()
    model.weights_sha256 = sha256_file(weights_path)
    model.model_id = model_id
    return model

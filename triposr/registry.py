"""The explicit map from the `*_cls` names of a config file to this package's stage classes.

Both the official dotted paths (`tsr.models....`) and the bare class names are accepted. Nothing is
imported by name: an unknown name is a `ConfigError`.
"""

from __future__ import annotations

from torch import nn

from triposr.backbone import Transformer1D
from triposr.config import ConfigError
from triposr.decoder import NeRFMLP
from triposr.image_tokenizer import DINOImageTokenizer
from triposr.post_processor import TriplaneUpsampler
from triposr.renderer import TriplaneNeRFRenderer
from triposr.triplane import TriplaneTokenizer

REGISTRY: dict[str, dict[str, type[nn.Module]]] = {
    "image_tokenizer": {
        "tsr.models.tokenizers.image.DINOSingleImageTokenizer": DINOImageTokenizer,
        "DINOSingleImageTokenizer": DINOImageTokenizer,
    },
    "tokenizer": {
        "tsr.models.tokenizers.triplane.Triplane1DTokenizer": TriplaneTokenizer,
        "Triplane1DTokenizer": TriplaneTokenizer,
    },
    "backbone": {
        "tsr.models.transformer.transformer_1d.Transformer1D": Transformer1D,
        "Transformer1D": Transformer1D,
    },
    "post_processor": {
        "tsr.models.network_utils.TriplaneUpsampleNetwork": TriplaneUpsampler,
        "TriplaneUpsampleNetwork": TriplaneUpsampler,
    },
    "decoder": {
        "tsr.models.network_utils.NeRFMLP": NeRFMLP,
        "NeRFMLP": NeRFMLP,
    },
    "renderer": {
        "tsr.models.nerf_renderer.TriplaneNeRFRenderer": TriplaneNeRFRenderer,
        "TriplaneNeRFRenderer": TriplaneNeRFRenderer,
    },
}


def resolve(stage: str, name: str) -> type[nn.Module]:
    """The class registered for `name` at `stage`; `ConfigError` when there is none."""
    try:
        return REGISTRY[stage][name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY.get(stage, {})))
        raise ConfigError(f"{stage}_cls: unknown class {name!r} (known: {known})") from None

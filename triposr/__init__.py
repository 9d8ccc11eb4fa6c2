"""TripoSR inference and training, checkpoint-exact with the official stabilityai/TripoSR weights.

Public API::

    model = triposr.load_model("stabilityai/TripoSR")        # or a folder, or TSR.from_config(cfg)
    codes = model.encode(images)                             # (B, H, W, 3) in [0, 1] -> (B, 3, C, R, R)
    field = model.query(codes, points)                       # density (B, N, 1), color (B, N, 3)
    rgb = model.render(codes, rays_o, rays_d)                # (B, H, W, 3)
    meshes = model.extract_mesh(codes, resolution=256)       # list of trimesh.Trimesh, z-up
"""

from triposr.config import ConfigError, TSRConfig, load_config_file, parse_config
from triposr.loading import ModelNotAvailable, UnsafeCheckpoint, load_model, read_state_dict, sha256_file
from triposr.model import TSR

__all__ = [
    "TSR",
    "ConfigError",
    "ModelNotAvailable",
    "TSRConfig",
    "UnsafeCheckpoint",
    "load_config_file",
    "load_model",
    "parse_config",
    "read_state_dict",
    "sha256_file",
]

"""Reading a synthetic dataset (layout: docs/training.md) for training and evaluation.

`SyntheticDataset(root, cond_size, view_size)` loads each object once, on first use, and keeps it
in memory as compact arrays: the conditioning image resized to the model's input size exactly as
`TSR.preprocess` would (so the model sees the same pixels), the supervision views box-reduced to
`view_size`, their cameras, and the 3D samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from PIL import Image

from training.data.cameras import CameraSpec
from training.data.synthetic import DATASET_FILE


class DatasetError(ValueError):
    """A dataset folder that does not have the documented layout; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ObjectRecord:
    """One object in memory.

    Attributes
    ----------
    cond : (3, S, S) float32 in [0, 1], the model input
    views : (V, h, w, 3) uint8 over white; masks (V, h, w) uint8
    c2w : (V, 4, 4) float32; fovy (V,) float32 degrees
    points : (P, 3) float32 and occupancy (P,) bool
    surface_points : (Q, 3) float32 and surface_colors (Q, 3) uint8
    """

    name: str
    kind: str
    cond: torch.Tensor
    views: np.ndarray
    masks: np.ndarray
    c2w: np.ndarray
    fovy: np.ndarray
    points: np.ndarray
    occupancy: np.ndarray
    surface_points: np.ndarray
    surface_colors: np.ndarray


def read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError("missing_file", f"{path}: missing")
    return np.asarray(Image.open(path))


def resize_like_model(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, size, size) float32, resized as `TSR.preprocess` resizes."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).float().div(255.0).permute(2, 0, 1)[None]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=True)
    return x[0]


def box_reduce(image: np.ndarray, size: int) -> np.ndarray:
    """Integer-factor box reduction of a (H, W[, C]) uint8 image to (size, size[, C])."""
    h = image.shape[0]
    if h == size:
        return image
    if h % size:
        raise DatasetError("bad_size", f"view size {h} is not a multiple of the requested {size}")
    k = h // size
    x = image.astype(np.float32).reshape(size, k, size, k, *image.shape[2:]).mean(axis=(1, 3))
    return np.round(x).astype(np.uint8)


class SyntheticDataset:
    """Objects of a dataset folder, loaded lazily and cached.

    Parameters
    ----------
    root : folder with dataset.json and objects/
    cond_size : the model's input size (cond images are resized to it once)
    view_size : supervision view size (views are box-reduced to it once; must divide the stored size)
    """

    def __init__(self, root: str | Path, cond_size: int = 512, view_size: int | None = None) -> None:
        self.root = Path(root)
        info_path = self.root / DATASET_FILE
        if not info_path.is_file():
            raise DatasetError("not_a_dataset", f"{self.root}: no {DATASET_FILE} (make one with `asset3d dataset make`)")
        self.info: dict[str, Any] = json.loads(info_path.read_text())
        self.names: list[str] = list(self.info["objects"])
        if not self.names:
            raise DatasetError("empty", f"{self.root}: the dataset lists no objects")
        self.cond_size = int(cond_size)
        self.view_size = int(view_size or self.info["config"]["view_size"])
        self._cache: dict[int, ObjectRecord] = {}

    def __len__(self) -> int:
        return len(self.names)

    def folder(self, i: int) -> Path:
        return self.root / "objects" / self.names[i]

    def mesh(self, i: int) -> trimesh.Trimesh:
        """The ground-truth mesh of object i (official frame)."""
        path = self.folder(i) / "mesh.ply"
        if not path.is_file():
            raise DatasetError("missing_file", f"{path}: missing")
        return trimesh.load(path, process=False, force="mesh")

    def cameras(self, i: int) -> dict[str, Any]:
        data = json.loads((self.folder(i) / "cameras.json").read_text())
        return {"cond": CameraSpec.from_json(data["cond"]), "views": [CameraSpec.from_json(c) for c in data["views"]]}

    def cond_image(self, i: int) -> np.ndarray:
        """(S, S, 3) uint8 conditioning image as stored (framed, on gray)."""
        return np.array(read_image(self.folder(i) / "cond.png")[..., :3])  # a writable copy

    def meta(self, i: int) -> dict[str, Any]:
        return json.loads((self.folder(i) / "meta.json").read_text())

    def __getitem__(self, i: int) -> ObjectRecord:
        if i in self._cache:
            return self._cache[i]
        from safetensors.numpy import load_file

        folder = self.folder(i)
        cams = self.cameras(i)["views"]
        views = np.stack([box_reduce(read_image(folder / f"view_{k:02d}.png")[..., :3], self.view_size) for k in range(len(cams))])
        masks = np.stack([box_reduce(read_image(folder / f"mask_{k:02d}.png"), self.view_size) for k in range(len(cams))])
        samples = load_file(str(folder / "samples.safetensors"))
        rec = ObjectRecord(
            name=self.names[i],
            kind=self.meta(i)["kind"],
            cond=resize_like_model(self.cond_image(i), self.cond_size),
            views=views,
            masks=masks,
            c2w=np.stack([c.matrix for c in cams]).astype(np.float32),
            fovy=np.array([c.fovy_deg for c in cams], dtype=np.float32),
            points=samples["points"],
            occupancy=samples["occupancy"].astype(bool),
            surface_points=samples["surface_points"],
            surface_colors=samples["surface_colors"],
        )
        self._cache[i] = rec
        return rec

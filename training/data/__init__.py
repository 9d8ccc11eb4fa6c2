"""Synthetic training and evaluation data: product-like shapes, their renders, cameras and 3D samples.

`make_dataset(seed, count, out)` writes a dataset (layout in docs/training.md); `SyntheticDataset`
reads one for training and evaluation.
"""

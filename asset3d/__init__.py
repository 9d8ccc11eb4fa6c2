"""asset3d: product photos in, web-ready 3D assets out, at catalogue scale."""

__version__ = "0.1.0"

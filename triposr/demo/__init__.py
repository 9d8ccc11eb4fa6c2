"""The bundled demo model: `config.yaml`, `model.safetensors` and `MODEL_CARD.md` (`load_model("demo")`).

A package only so that setuptools ships these files as package data; it holds no code.
"""

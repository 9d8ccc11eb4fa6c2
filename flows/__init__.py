"""Prefect flows: orchestration only.

* `flows.convert.convert_batch` -- one batch (prefix, folder or list of photo URIs); deployment ``convert-batch``;
* `flows.nightly.nightly_catalogue` -- the whole source, new or changed photos only; deployment ``nightly-catalogue``;
* `flows.batch` -- what both share: stages submitted as inputs become ready, failure isolation, artifacts, fan-out;
* `flows.triggers` -- the ``asset3d.batch.arrived`` event: emit it, and poll a source to emit it for new photos.

Importing this package does not import Prefect; import the modules.
"""

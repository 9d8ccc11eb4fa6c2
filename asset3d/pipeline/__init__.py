"""The conversion stages as plain functions (no Prefect): what `tasks/` wraps and `asset3d convert` calls.

* `asset3d.pipeline.photos` -- discover photos and their SKUs, fetch (size cap, sha256, decode check), intake;
* `asset3d.pipeline.models` -- which model runs (`choose_model`), one load per process, micro-batches;
* `asset3d.pipeline.assets` -- mesh -> GLB, previews, metrics, review decision; publish with a manifest;
* `asset3d.pipeline.records` -- the catalogue: runs, what is already converted, assets, failures;
* `asset3d.pipeline.summary` -- per-photo outcomes and the batch report;
* `asset3d.pipeline.errors` -- `StageError`, `is_transient` (the retry rule), `describe`.
"""

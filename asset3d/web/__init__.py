"""The review web app (``asset3d serve``) and how catalogue records are shown to reviewers.

* `asset3d.web.present` -- the gate's verdict, intake flags and assets as reviewers see them (text and
  JSON); pure functions, shared with ``asset3d catalogue`` and ``asset3d review``;
* `asset3d.web.settings` -- `ServeSettings` (``ASSET3D_SERVE_*``);
* `asset3d.web.reviewers` -- reviewer tokens, stored hashed in a file;
* `asset3d.web.security` -- who is asking (bearer token, basic auth, session cookie) and CSRF tokens;
* `asset3d.web.files` -- GLBs, previews and photos streamed from the configured buckets, nothing else;
* `asset3d.web.charts` -- the overview's small inline-SVG charts;
* `asset3d.web.app` -- `create_app`: the FastAPI application (pages, ``/api/``, files).

Importing this package imports no web framework: `asset3d.web.app` does.
Nothing here imports Prefect or `flows` (an import-linter contract checks it).
"""

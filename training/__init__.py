"""Training and evaluating TripoSR: synthetic product data, the training recipe, the paper's metrics.

* `training.data` -- synthetic products (watertight meshes, framed input views, supervision views, cameras);
* `training.recipe` -- `TrainConfig` and `train`: the TripoSR recipe (rendering losses, mask loss, LPIPS);
* `training.evaluation` -- Chamfer distance and F-scores against a sphere baseline.

It sits beside the pipeline, not inside `triposr/`: making data and measuring meshes use `intake` and
`meshing`, which the model library must not depend on.
"""

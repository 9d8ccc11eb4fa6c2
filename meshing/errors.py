"""The one exception type of the meshing stage, with a machine-readable `reason`."""

from __future__ import annotations

from typing import Any, Literal

Reason = Literal[
    "bad_input",  # the mesh, image, option or metadata handed in is unusable
    "empty_mesh",  # nothing is left (no faces, or clean-up removed everything)
    "too_dense",  # a mesh too dense for an operation (xatlas): decimate first
    "unknown_preset",  # a preset name that is not defined
    "preset_unmet",  # a request or a written file that breaks the preset's limits
    "bad_field",  # the field colour callable returned the wrong shape or values
    "validator_unavailable",  # node or the gltf-validator package cannot be run
    "validator_errors",  # the written GLB has glTF-Validator errors
    "renderer_unavailable",  # no headless OpenGL context could be created
]


class MeshingError(ValueError):
    """A refused input or an unmet requirement of the meshing stage.

    Parameters
    ----------
    reason
        Machine-readable cause, one of `Reason`.
    message
        Human-readable explanation naming the item and the cause.
    details
        Optional JSON-serialisable facts (limits, measured values, validator messages).
    """

    #: the same mesh and options give the same refusal; a missing validator or renderer is the machine's
    #: fault, not the photo's, but retrying at once does not bring it back either
    transient = False

    def __init__(self, reason: Reason, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: Reason = reason
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

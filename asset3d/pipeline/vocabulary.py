"""The pipeline's shared words, each named once.

* `Stage`: where a photo is (and where it failed): the value is what failure rows and reports store;
* `PhotoStatus`: what a batch did with one photo (the batch report's ``status``);
* the gate's decision is `meshing.review.GateDecision`, intake methods `intake.IntakeMethod`, catalogue
  statuses `storage.catalogue.AssetStatus` / `RunStatus`, a reviewer's decision
  `storage.catalogue.ReviewDecision`.

Two identifiers, never mixed up: the **asset id** is the catalogue row's integer id; the **conversion key**
is the 64-hex SHA-256 of photo bytes, conversion parameters and weights (`storage.catalogue.conversion_key`)
that names the asset's folder in the destination bucket.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """The stages of one photo, in order."""

    discover = "discover"
    fetch = "fetch"
    intake = "intake"
    reconstruct = "reconstruct"
    build = "build"
    review = "review"  # the gate (a stage of its own in failure rows: ``review/quality_gate``)
    publish = "publish"
    record = "record"
    fan_out = "fan-out"


class PhotoStatus(StrEnum):
    """What a batch did with one photo."""

    pending = "pending"  # not finished yet
    published = "published"  # approved by the gate: files and manifest in the destination, catalogue says so
    needs_review = "needs_review"  # built and staged (files, no manifest) for a person to look at
    rejected = "rejected"  # built, refused by the gate (a reviewer may overturn it)
    failed = "failed"  # a stage failed (stage, reason, message)
    skipped = "skipped"  # already converted with this model and these parameters
    other_run = "other_run"  # converted (or being converted) by an overlapping run: not done twice

    @property
    def is_failure(self) -> bool:
        """Counts as a failure for exit codes (2 when any photo has one)."""
        return self in (PhotoStatus.failed, PhotoStatus.rejected)

"""What a batch did, photo by photo, and its report: counts by status, slowest stages, failures.

Statuses of a photo in a batch:

* ``published``: the gate approved it; files and manifest are in the destination, the catalogue says so;
* ``needs_review``: built and staged (files, no manifest) for a person to look at;
* ``rejected``: built, but the gate rejected it (a ``rejected`` asset and a failure row with the reasons);
* ``failed``: a stage failed (``stage``, ``reason``, ``message``);
* ``skipped``: already converted with this model and these parameters (nothing downloaded or written).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from asset3d.pipeline.assets import KeyMetrics
from asset3d.pipeline.vocabulary import PhotoStatus, Stage
from storage.catalogue.models import AssetStatus

if TYPE_CHECKING:
    from asset3d.pipeline.assets import BuiltAsset
    from storage.catalogue import AssetRecord, ConvertedPhoto

#: The statuses a report counts, in the order it lists them.
STATUSES = tuple(s for s in PhotoStatus if s is not PhotoStatus.pending)


@dataclass
class PhotoOutcome:
    """One photo's row in the batch report (``asset_id``: the catalogue's; ``glb_uri``: where its GLB is)."""

    uri: str
    sku: str
    status: PhotoStatus = PhotoStatus.pending
    stage: str | None = None
    reason: str | None = None
    message: str | None = None
    faces: int | None = None
    glb_uri: str | None = None
    asset_id: int | None = None
    metrics: KeyMetrics = field(default_factory=KeyMetrics)
    timings_s: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = PhotoStatus(self.status)
        if isinstance(self.metrics, dict):  # read back from a report's JSON
            self.metrics = KeyMetrics(**self.metrics)

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    def fail(self, stage: Stage | str, reason: str, message: str) -> None:
        self.status, self.stage, self.reason, self.message = PhotoStatus.failed, str(Stage(stage).value), reason, message

    def other_run(self, run_id: int | None, asset: AssetRecord | None) -> None:
        """An overlapping run converts (or converted) this photo: not done twice here."""
        self.status = PhotoStatus.other_run
        if asset is not None:
            self.asset_id, self.glb_uri, self.faces = asset.id, asset.glb_uri, asset.faces
            self.message = f"converted by run {run_id} (asset {asset.id}, {asset.status.value})"
        else:
            self.message = f"being converted by run {run_id}"

    def skipped(self, done: ConvertedPhoto) -> None:
        """Already converted with this model and these parameters: nothing downloaded or written."""
        self.status = PhotoStatus.skipped
        self.asset_id, self.glb_uri, self.faces = done.asset_id, done.glb_uri, done.faces
        self.message = f"already converted (asset {done.asset_id}, {done.status.value})"

    def converted(self, asset: AssetRecord, built: BuiltAsset, glb_uri: str) -> None:
        """Fill the row of a photo that went through every stage, from its catalogue asset."""
        self.asset_id, self.glb_uri, self.faces, self.metrics = asset.id, glb_uri, built.faces, KeyMetrics.of(built.metrics)
        if asset.published_at is not None:
            self.status = PhotoStatus.published
        elif asset.status is AssetStatus.rejected:  # refused by the gate
            self.status, self.stage, self.reason = PhotoStatus.rejected, Stage.review.value, "quality_gate"
            self.message = "; ".join(built.reasons)
        else:
            self.status = PhotoStatus(asset.status.value)

    def line(self) -> str:
        """One line for a terminal."""
        if self.status.is_failure:
            return f"{self.status.value:<12} {self.uri}: [{self.stage}/{self.reason}] {self.message}"
        detail = f"{self.faces} faces, {self.glb_uri}" if self.glb_uri else ""
        return f"{self.status.value:<12} {self.uri} {detail}".rstrip()


@dataclass
class BatchSummary:
    """The whole batch: one outcome per photo, wall time, model, run ids."""

    kind: str
    outcomes: list[PhotoOutcome]
    wall_s: float = 0.0
    model_label: str = ""
    model_id: str = ""
    weights_sha256: str = ""
    run_ids: list[int] = field(default_factory=list)
    flow_run_id: str | None = None
    #: Work done once for the whole batch (listing, model load, planning), in seconds per stage.
    batch_timings_s: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        c = Counter(o.status for o in self.outcomes)
        return {s.value: c.get(s, 0) for s in STATUSES}

    @property
    def failed(self) -> list[PhotoOutcome]:
        return [o for o in self.outcomes if o.status.is_failure]

    def exit_code(self) -> int:
        """0 when no photo failed, 2 when some did (the CLI's convention)."""
        return 2 if self.failed else 0

    def stage_seconds(self) -> dict[str, dict[str, float]]:
        """Per stage: total, mean and max seconds of work over the photos that ran it."""
        per: dict[str, list[float]] = {}
        for o in self.outcomes:
            for stage, secs in o.timings_s.items():
                per.setdefault(stage, []).append(secs)
        return {
            stage: {"total": round(sum(v), 3), "mean": round(sum(v) / len(v), 3), "max": round(max(v), 3), "count": len(v)}
            for stage, v in sorted(per.items(), key=lambda kv: -sum(kv[1]))
        }

    def work_seconds(self) -> float:
        """Sum of the stage work over every photo, plus the batch-level stages (counted once)."""
        return round(sum(sum(o.timings_s.values()) for o in self.outcomes) + sum(self.batch_timings_s.values()), 3)

    def table(self) -> list[dict[str, Any]]:
        """Rows for the table artifact: SKU, photo, status, faces, key metrics, GLB key or failure reason."""
        rows = []
        for o in self.outcomes:
            iou = o.metrics.silhouette_iou
            rows.append(
                {
                    "sku": o.sku,
                    "photo": o.name,
                    "status": o.status.value,
                    "faces": o.faces if o.faces is not None else "",
                    "glb_bytes": o.metrics.bytes or "",
                    "silhouette_iou": f"{iou:.3f}" if isinstance(iou, float) else "",
                    "glb_uri_or_reason": o.glb_uri if o.glb_uri else (f"{o.stage}/{o.reason}" if o.reason else ""),
                }
            )
        return rows

    def markdown(self) -> str:
        """Counts by status, slowest stages and failures, for the markdown artifact and the terminal."""
        counts = self.counts()
        lines = [
            f"# {self.kind}: {len(self.outcomes)} photos in {self.wall_s:.1f} s",
            "",
            f"Model: {self.model_label} (`{self.model_id}`, weights sha256 `{self.weights_sha256[:16]}`)",
            "",
            "| status | photos |",
            "|---|---|",
            *(f"| {s} | {n} |" for s, n in counts.items()),
            "",
        ]
        stages = self.stage_seconds()
        if stages:
            lines += ["## Slowest stages", "", "| stage | total s | mean s | max s | photos |", "|---|---|---|---|---|"]
            lines += [f"| {k} | {v['total']:.2f} | {v['mean']:.2f} | {v['max']:.2f} | {v['count']} |" for k, v in stages.items()]
            slow = sorted((o for o in self.outcomes if o.timings_s), key=lambda o: -sum(o.timings_s.values()))[:5]
            lines += ["", "Slowest photos: " + ", ".join(f"{o.name} ({sum(o.timings_s.values()):.1f} s)" for o in slow), ""]
        if self.failed:
            lines += ["## Failures", "", "| photo | status | stage | reason | message |", "|---|---|---|---|---|"]
            lines += [
                f"| {o.uri} | {o.status.value} | {o.stage} | {o.reason} | {(o.message or '').replace('|', '/')[:300]} |" for o in self.failed
            ]
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "counts": self.counts(),
            "wall_s": round(self.wall_s, 3),
            "work_s": self.work_seconds(),
            "stages": self.stage_seconds(),
            "batch_stages_s": self.batch_timings_s,
            "model": {"label": self.model_label, "id": self.model_id, "weights_sha256": self.weights_sha256},
            "run_ids": self.run_ids,
            "flow_run_id": self.flow_run_id,
            "photos": [asdict(o) for o in self.outcomes],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> BatchSummary:
        model = doc.get("model", {})
        return cls(
            kind=doc["kind"],
            outcomes=[PhotoOutcome(**o) for o in doc.get("photos", [])],
            wall_s=float(doc.get("wall_s", 0.0)),
            model_label=model.get("label", ""),
            model_id=model.get("id", ""),
            weights_sha256=model.get("weights_sha256", ""),
            run_ids=list(doc.get("run_ids", [])),
            flow_run_id=doc.get("flow_run_id"),
            batch_timings_s=dict(doc.get("batch_stages_s", {})),
        )

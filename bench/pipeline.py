"""Benchmark of the orchestration: `convert_batch` on N photos with the tiny model, Prefect overhead vs. stage work.

    python bench/pipeline.py --photos 200 --json bench/out/pipeline.json [--threads 1]
    python bench/pipeline.py --fixed-cost 4 --json bench/out/pipeline_fixed.json   # per-run start-up cost
    ASSET3D_BENCH_CODE=<another checkout> python bench/pipeline.py --fixed-cost 4 ...  # that checkout's flows

N distinct photos (the shared sample photos, each copy made unique by a text chunk, so no two share a
sha256 and no cache answers) sit in a local folder bucket; the batch publishes to a local folder with a
SQLite catalogue, on a temporary Prefect server (`prefect_test_harness`, started before the clock). The tiny
conformance model (``../shared/triposr/tiny_conformance.pt``) reconstructs at 32^3 (its coarse field needs
no more); everything else is the product's defaults (web preset, eight 512 px turntable previews,
validation, metrics, review). Micro-batches of 8 (``--batch-size``): each reconstruction task takes a slot
of the ``gpu`` tag limit from the server, a round trip of 0.1-0.6 s on a busy 2-core machine.

Every task times its own work; the batch report sums them (per photo, plus the batch-level listing, model
identity and planning). With ``--threads 1`` (the default) the tasks run one at a time, so

    orchestration overhead = batch wall time - sum of stage work

is what Prefect and the flow add: task-run bookkeeping, state changes, result persistence for the
content-keyed caches, artifacts, the flow's own loop. Target: <= 15 % of the wall time. Photos per minute
are reported too (``--threads N`` for the concurrent throughput; the overhead formula then no longer
applies, overlapping work is counted once per task). Prints the JSON it writes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# run as a script, bench/ would come first on sys.path and bench/intake.py would shadow the intake package
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
SHARED = Path(os.environ.get("ASSET3D_SHARED", REPO.parent / "shared"))
TARGET_OVERHEAD = 0.15
PHOTOS = ("chair.png", "robot.png", "hamburger.png", "cerebro.jpg", "flor.png", "teapot.png")


def make_photos(folder: Path, n: int) -> None:
    """``n`` distinct photos, ``folder/SKU-00000/<name>``, cycling through the shared ones."""
    from PIL import Image, PngImagePlugin

    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        image = Image.open(SHARED / "photos" / name)
        out = folder / f"SKU-{i:05d}" / (Path(name).stem + ".png")
        out.parent.mkdir(parents=True)
        info = PngImagePlugin.PngInfo()
        info.add_text("asset3d-bench", str(i))
        buf = io.BytesIO()
        image.save(buf, format="PNG", pnginfo=info, compress_level=1)
        out.write_bytes(buf.getvalue())


def tiny_model(folder: Path) -> str:
    import torch
    import yaml

    fixture = torch.load(SHARED / "triposr" / "tiny_conformance.pt", weights_only=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(fixture["config"]))
    torch.save(fixture["state_dict"], folder / "model.ckpt")
    return str(folder)


#: What a flow-run process does, timed: the imports, then one batch (`--fixed-cost`).
CHILD = """
import json, os, sys, time
t_start = time.time()
sys.path.insert(0, os.environ["ASSET3D_BENCH_REPO"])
from flows.convert import convert_batch
t_imported = time.time()
report = convert_batch(os.environ["ASSET3D_BENCH_SOURCE"], dest=os.environ["ASSET3D_BENCH_DEST"])
t_done = time.time()
print(json.dumps({"t_start": t_start, "t_imported": t_imported, "t_done": t_done, "work_s": report["work_s"],
                  "batch_stages_s": report["batch_stages_s"], "counts": report["counts"]}))
"""


def fixed_cost(runs: int, json_path: Path) -> int:
    """The fixed cost of a flow run in a process of its own (as a process worker starts each run): process
    start, imports, engine, model identity, catalogue, model load, artifacts -- everything but the stage work
    of its one photo. Target: under 8 s on a 2-core CPU with the tiny model."""
    import subprocess

    work = Path(tempfile.mkdtemp(prefix="asset3d-bench-fixed-"))
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    make_photos(work / "photos", runs)
    env = {
        **os.environ,
        "ASSET3D_MODEL": tiny_model(Path(tempfile.mkdtemp(dir=work))), "ASSET3D_DEVICE": "cpu", "ASSET3D_DTYPE": "fp32",
        "ASSET3D_MC_RESOLUTION": "32", "ASSET3D_CATALOGUE_URL": f"sqlite:///{work / 'catalogue.db'}",
        "ASSET3D_BENCH_REPO": os.environ.get("ASSET3D_BENCH_CODE", str(REPO)), "ASSET3D_BENCH_DEST": str(work / "assets"),
    }  # fmt: skip
    rows = []
    with prefect_test_harness(server_startup_timeout=180):
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        for i in range(runs):
            env["ASSET3D_BENCH_SOURCE"] = str(work / "photos" / f"SKU-{i:05d}")
            t0 = time.time()
            proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
            wall = time.time() - t0
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append({
                "wall_s": round(wall, 3),
                "process_start_and_imports_s": round(child["t_imported"] - t0, 3),
                "flow_s": round(child["t_done"] - child["t_imported"], 3),
                "stage_work_s": round(child["work_s"] - sum(child["batch_stages_s"].values()), 3),
                "batch_stages_s": child["batch_stages_s"],
                "fixed_cost_s": round(wall - (child["work_s"] - sum(child["batch_stages_s"].values())), 3),
                "counts": {k: v for k, v in child["counts"].items() if v},
            })  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr)
    steady = rows[1:] or rows
    result = {
        "bench": "pipeline-fixed-cost",
        "runs": runs,
        "fixed_cost_s_first": rows[0]["fixed_cost_s"],
        "fixed_cost_s_median": sorted(r["fixed_cost_s"] for r in steady)[len(steady) // 2],
        "target_fixed_cost_s": 8.0,
        "runs_detail": rows,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200, help="photos in the batch (default 200)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--threads", type=int, default=1, help="task threads (default 1: overhead is measurable)")
    parser.add_argument("--batch-size", type=int, default=8, help="reconstruction micro-batch (default 8)")
    parser.add_argument(
        "--fixed-cost", type=int, default=0, metavar="RUNS",
        help="instead: RUNS flow runs of one photo, each in a process of its own, and their fixed cost",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not (SHARED / "triposr" / "tiny_conformance.pt").is_file():
        print(f"bench/pipeline.py: the shared data folder is missing at {SHARED}", file=sys.stderr)
        return 1
    if args.fixed_cost:
        return fixed_cost(args.fixed_cost, args.json)

    work = Path(tempfile.mkdtemp(prefix="asset3d-bench-"))
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS"] = str(args.threads)
    from prefect.testing.utilities import prefect_test_harness

    from flows.convert import convert_batch

    make_photos(work / "photos", args.photos)
    options = {
        "model": tiny_model(Path(tempfile.mkdtemp(dir=work))),
        "device": "cpu",
        "dtype": "fp32",
        "mc_resolution": 32,
        "batch_size": args.batch_size,
        "auto_migrate": True,
    }
    os.environ.update({f"ASSET3D_{k.upper()}": str(v) for k, v in options.items()})  # the worker's settings
    with prefect_test_harness(server_startup_timeout=180):
        t0 = time.perf_counter()
        report = convert_batch(str(work / "photos"), dest=str(work / "assets"), catalogue_url=f"sqlite:///{work / 'catalogue.db'}")
        wall = time.perf_counter() - t0
        time.sleep(2.0)  # let the server record the last events before the harness stops it
    work_s = float(report["work_s"])
    overhead = wall - work_s
    converted = args.photos - report["counts"]["skipped"]
    result = {
        "bench": "pipeline",
        "photos": args.photos,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "counts": report["counts"],
        "batch_wall_s": round(wall, 3),
        "stage_work_s": round(work_s, 3),
        "orchestration_overhead_s": round(overhead, 3),
        "overhead_fraction": round(overhead / wall, 4),
        "overhead_per_photo_ms": round(1000 * overhead / max(1, args.photos), 1),
        "target_overhead_fraction": TARGET_OVERHEAD,
        "meets_target": (overhead / wall <= TARGET_OVERHEAD) if args.threads == 1 else None,
        "photos_per_minute": round(60.0 * converted / wall, 2),
        "stages": report["stages"],
        "batch_stages_s": report["batch_stages_s"],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {k: v for k, v in options.items() if k != "model"},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Prefect tasks: thin @task wrappers over the pure stages (`asset3d.pipeline`).

* `tasks.stages` -- one task per stage: discover, start-run, plan, fetch, check-bytes, intake, reconstruct
  (tag ``gpu``, micro-batches), build, publish, record, record-failure, finish-run;
* `tasks.policy` -- retries for transient errors only, with back-off and jitter; content cache keys.
"""

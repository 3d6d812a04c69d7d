"""Running a dask computation where it belongs: on the active ``distributed.Client`` if there
is one, else on dask's local scheduler, with a progress bar.

- :func:`compute_array` computes one dask array to numpy (small results: a map of a region);
- :func:`compute_tasks` runs many independent tasks whose results are not needed (the region
  writes of :mod:`geoslide.store.regions`) and ticks a bar per task.

Under a Client every task is submitted at once, as one graph: the scheduler queues the reads
(root tasks) and starts them as workers free up, and the heavy steps' regions depend on their
neighbours' border strips only (:mod:`geoslide.parallel.halo`), so a worker holds a few
regions' working sets whatever the raster size. dask's Active Memory Manager is paused for the
run: it drops a key's replicas beyond the tasks already assigned to a worker, so between two
regions it would drop the model from a worker, which would then fetch and unpickle it again.
The values every task shares (the torch model) are put on every worker first
(:func:`broadcast_shared`): each worker receives and unpickles the model once.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from geoslide.parallel.cluster import active_client
from geoslide.parallel.halo import ancestors


def compute_array(arr: Any, progress: bool = True) -> np.ndarray:
    """Compute a dask array with a progress bar (dask's, or distributed's under a Client)."""
    client = active_client()
    if client is not None:
        future = client.compute(arr)
        if progress:
            from distributed import progress as dprogress

            dprogress(future)
        return np.asarray(future.result())
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return np.asarray(arr.compute())
    return np.asarray(arr.compute())


def pause_amm(client: Any) -> bool:
    """Stop the scheduler's Active Memory Manager if it runs; True if it did."""
    try:
        if client.amm.running():
            client.amm.stop()
            return True
    except Exception:  # noqa: BLE001 - an old scheduler without the AMM
        pass
    return False


def broadcast_shared(client: Any, todo: list[Any]) -> list[Any]:
    """Put the values every task depends on and that are written into the graph (the torch
    model) on every worker before the tasks are submitted; returns their futures, to hold for
    the run.

    A task goes to a worker that holds one of its inputs: with the model on one worker only,
    that worker would be the only candidate for the first regions (the others' border strips
    are small), and the rest of the cluster would wait for work stealing."""
    from dask.core import get_dependencies
    from dask.delayed import Delayed

    if len(todo) < 2:
        return []
    graph = dict(todo[0].__dask_graph__())
    shared = None
    for d in todo:
        shared = ancestors(graph, d.key) if shared is None else shared & ancestors(graph, d.key)
        if not shared:
            return []
    literals = [k for k in shared if not get_dependencies(graph, k)]
    if not literals:
        return []
    held = client.compute([Delayed(k, {k: graph[k]}) for k in literals], optimize_graph=False)
    client.replicate(held)
    return held


def compute_tasks(todo: list[Any], progress: bool, desc: str, unit: str = "region") -> None:
    """Compute the dask Delayed ``todo`` (results dropped) on the active Client or dask's local
    scheduler, one progress-bar tick per task; a task's error is re-raised (after dask's
    retries) and the rest cancelled."""
    from tqdm.auto import tqdm

    client = active_client()
    bar = tqdm(total=len(todo), desc=desc, unit=unit, disable=not progress)
    try:
        if client is not None:
            from distributed import as_completed

            amm = pause_amm(client)
            held = broadcast_shared(client, todo)
            # a finished task's future is dropped at once: a future held to the end keeps its
            # task's whole chain (released region tasks with their graphs) in worker memory
            done = as_completed(client.compute(list(todo)))
            pending = set(done.futures)
            try:
                for fut in done:
                    pending.discard(fut)
                    fut.result()
                    del fut
                    bar.update(1)
            except BaseException:
                client.cancel(list(pending))
                raise
            finally:
                for f in held:
                    f.release()
                if amm:
                    client.amm.start()
            return

        import dask
        from dask.callbacks import Callback

        names = {d.key[0] if isinstance(d.key, tuple) else d.key for d in todo}

        class _Tick(Callback):
            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
                if isinstance(key, tuple) and key[0] in names:
                    bar.update(1)

        with _Tick():
            dask.compute(*todo)
    finally:
        bar.close()


__all__ = ["compute_array", "compute_tasks", "broadcast_shared", "pause_amm"]

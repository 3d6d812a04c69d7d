"""geoslide.parallel.halo: windows assembled from the neighbours' border strips.

The reference is numpy: the whole array padded with ``fill`` and the same window function
applied to it in one piece. The graph tests check what makes the halo exchange cheap in
memory: a region task depends on its neighbours' strips, never on their whole blocks.
"""
from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoslide.parallel.chunking import merge_thin
from geoslide.errors import ChunkingError
from geoslide.parallel.halo import PREFIX, map_halo


def probe(win: np.ndarray, hy: int, hx: int, scale: float = 1.0) -> np.ndarray:
    """Each output pixel mixes the four corners and the centre of its window, per channel,
    with distinct weights: a misplaced strip or corner changes the result."""
    _, hh, ww = win.shape
    h, w = hh - 2 * hy, ww - 2 * hx
    parts = [win[:, 0:h, 0:w], win[:, 2 * hy:2 * hy + h, 2 * hx:2 * hx + w],
             win[:, 0:h, 2 * hx:2 * hx + w], win[:, 2 * hy:2 * hy + h, 0:w],
             win[:, hy:hy + h, hx:hx + w]]
    weights = np.arange(1, win.shape[0] + 1, dtype=win.dtype)[:, None, None]
    return sum((2.0 ** k) * (p * weights).sum(axis=0) for k, p in enumerate(parts)) * scale


def probe_channel(win: np.ndarray, hy: int, hx: int) -> np.ndarray:
    """:func:`probe` with a leading channel axis, to chain a halo step on another."""
    return probe(win, hy, hx)[None]


def reference(x: np.ndarray, hy: int, hx: int, fill: float, scale: float) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (hy, hy), (hx, hx)), constant_values=fill)
    return probe(padded, hy, hx, scale)


@st.composite
def cases(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    hy, hx = draw(st.integers(0, 7)), draw(st.integers(0, 7))

    def chunks(n: int, depth: int) -> tuple[int, ...]:
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=6))) if n > 1 else []
        # blocks thinner than the halo merged, as align_dask does before map_halo
        return merge_thin(tuple(np.diff([0, *cuts, n]).tolist()), depth)

    return h, w, hy, hx, chunks(h, hy), chunks(w, hx), draw(st.integers(1, 3)), draw(
        st.sampled_from([np.nan, 0.0, -2.5]))


@settings(max_examples=60, deadline=None)
@given(cases(), st.sampled_from([None, True, False]), st.booleans(), st.integers(0, 2**16))
def test_map_halo_equals_the_padded_numpy_reference(case, inline, layers, seed):
    """One (C, H, W) array, or its channels given as layers: the first as a (1, H, W)
    array, the others (H, W)."""
    h, w, hy, hx, cy, cx, c, fill = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(c, h, w)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    arr = (da.from_array(x, chunks=(c, cy, cx)) * 1).astype(np.float32)
    if layers:
        arr = [arr[:1]] + [arr[k] for k in range(1, c)]
    out = map_halo(probe, arr, (hy, hx), hy, hx, fill=fill, chunks=(cy, cx),
                   dtype=np.float32, name="probe", inline=inline, scale=2.0)
    expected = reference(x, hy, hx, fill, 2.0)
    np.testing.assert_array_equal(out.compute(scheduler="sync"), expected)
    np.testing.assert_array_equal(out.compute(scheduler="threads"), expected)


def test_layers_of_two_dtypes_fill_a_window_of_their_result_dtype():
    """A float32 and a float64 layer: the window is float64, equal to their float64 stack;
    a layer that is not a dask array is refused by name."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 40, 36))
    a = da.from_array(x[0].astype(np.float32), chunks=(20, 18))
    b = da.from_array(x[1], chunks=(20, 18))
    out = map_halo(probe, [a, b], (3, 2), 3, 2, fill=0.0, chunks=a.chunks, dtype=np.float64,
                   name="probe")
    want = reference(np.stack([x[0].astype(np.float32).astype(np.float64), x[1]]), 3, 2,
                     0.0, 1.0)
    np.testing.assert_array_equal(out.compute(), want)
    with pytest.raises(TypeError, match="expected dask arrays as layers, found ndarray"):
        map_halo(probe, [a, x[1]], (3, 2), 3, 2, fill=0.0, chunks=a.chunks,
                 dtype=np.float64, name="probe")


def _region_deps(out: da.Array) -> dict:
    graph = dict(out.__dask_graph__())
    from dask.core import get_dependencies

    return {k: get_dependencies(graph, k) for k in graph
            if isinstance(k, tuple) and str(k[0]).startswith(f"{PREFIX}-probe")}


def test_regions_depend_on_strips_and_a_zarr_core_is_read_inside_the_task(tmp_path, kashmir):
    """On a Zarr-backed array (the store of `geoslide features` / `predict`) a region task
    depends on its neighbours' pieces only: its own block is read inside the task."""
    import xarray as xr

    path = tmp_path / "dem.zarr"
    kashmir[["elevation"]].chunk({"y": 256, "x": 256}).to_zarr(path)
    z = xr.open_zarr(path).elevation.data
    stack = da.stack([z, z * 2], axis=0).rechunk({0: -1})
    out = map_halo(probe, stack, (16, 16), 16, 16, fill=np.nan, chunks=z.chunks,
                   dtype=np.float32, name="probe")
    deps = _region_deps(out)
    assert len(deps) == len(z.chunks[0]) * len(z.chunks[1])
    for key, keys in deps.items():
        assert keys and all(str(k[0]).startswith(f"{PREFIX}-piece") for k in keys), key
    inner = (1, 1)  # an interior block has all eight neighbours
    assert len(deps[(next(iter(deps))[0], *inner)]) == 8
    e = kashmir.elevation.values
    expected = reference(np.stack([e, e * 2]).astype(np.float32), 16, 16, np.nan, 1.0)
    np.testing.assert_allclose(out.compute(), expected, rtol=1e-6)


def test_a_chained_halo_step_or_big_in_memory_data_is_not_recomputed(monkeypatch):
    """A block whose sub-graph holds another halo step (a lazily chained heavy step) or more
    than INLINE_MAX_BYTES of in-memory data is a dependency, not recomputed in the task."""
    import geoslide.parallel.halo as halo

    x = da.ones((1, 64, 64), chunks=(1, 32, 32), dtype=np.float32)
    first = map_halo(probe_channel, x, (4, 4), 4, 4, fill=0.0,
                     chunks=((1,), (32, 32), (32, 32)), dtype=np.float32, name="probe")
    second = map_halo(probe, first, (4, 4), 4, 4, fill=0.0, chunks=((32, 32), (32, 32)),
                      dtype=np.float32, name="probe-chained")
    graph = dict(second.__dask_graph__())
    from dask.core import get_dependencies

    regions = [k for k in graph if str(k[0]).startswith(f"{PREFIX}-probe-chained")]
    for k in regions:
        assert any(d[0] == first.name for d in get_dependencies(graph, k))
    expected = reference(reference(np.ones((1, 64, 64), np.float32), 4, 4, 0.0, 1.0)[None],
                         4, 4, 0.0, 1.0)
    np.testing.assert_array_equal(second.compute(scheduler="sync"), expected)

    monkeypatch.setattr(halo, "INLINE_MAX_BYTES", 1000)  # 32 x 32 float32 blocks are 4 KiB
    big = da.from_array(np.ones((1, 64, 64), np.float32), chunks=(1, 32, 32))
    out = map_halo(probe, big, (4, 4), 4, 4, fill=0.0, chunks=((32, 32), (32, 32)),
                   dtype=np.float32, name="probe")
    for key, keys in _region_deps(out).items():
        assert (big.name, 0, key[1], key[2]) in keys


def test_blocks_thinner_than_the_halo_are_refused():
    x = da.zeros((1, 40, 40), chunks=(1, (30, 10), 40))
    with pytest.raises(ChunkingError, match="along y.*rechunk to blocks of at least 16 px"):
        map_halo(probe, x, (16, 16), 16, 16, fill=0.0, chunks=((30, 10), (40,)),
                 dtype=np.float32, name="probe")
    with pytest.raises(ValueError, match="one block along C"):
        map_halo(probe, da.zeros((2, 40, 40), chunks=(1, 40, 40)), (1, 1), 1, 1, fill=0.0,
                 chunks=((40,), (40,)), dtype=np.float32, name="probe")
    with pytest.raises(ChunkingError, match="one chunking of y and x"):
        map_halo(probe, [da.zeros((40, 40), chunks=20), da.zeros((40, 40), chunks=40)],
                 (1, 1), 1, 1, fill=0.0, chunks=((20, 20), (20, 20)), dtype=np.float32,
                 name="probe")
    # a single block thinner than the halo is fine: everything around it is fill
    one = map_halo(probe, da.ones((1, 5, 5), chunks=(1, 5, 5)), (16, 16), 16, 16, fill=0.0,
                   chunks=((5,), (5,)), dtype=np.float32, name="probe")
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(one.compute(),
                                      reference(np.ones((1, 5, 5)), 16, 16, 0.0, 1.0))


def test_the_one_dask_internal_still_tells_data_from_tasks():
    """geoslide.parallel.halo.is_data_node reads dask's task spec: if a dask release changes
    it, this fails first, naming the function to update (and pyproject.toml's dask range)."""
    import dask.array as da

    from geoslide.parallel.halo import is_data_node

    a = da.from_array(np.arange(16.0).reshape(4, 4), chunks=2)
    graph = dict((a + 1).__dask_graph__())
    kinds = {is_data_node(v) for v in graph.values()}
    assert kinds == {True, False}, (
        "dask's graph values changed shape: update geoslide.parallel.halo.is_data_node "
        "and the dask range in pyproject.toml")

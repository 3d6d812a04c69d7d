"""How sure the map is: the spread of a seed ensemble's members, pixel by pixel.

A seed ensemble (``geoslide train --ensemble N``, :class:`geoslide.learn.models.Ensemble`)
maps the mean probability of its ``N`` members. ``predict(ds, model, spread=True)`` runs the
same seamless region-by-region pass (one forward of each member per window) and keeps, besides
that mean (bit for bit the plain map), the population standard deviation of the members'
probabilities: 0 where they agree, at most 0.5. It says where the map depends on the seed,
i.e. on how the training happened to go, not on the data: a lower bound of the model's
uncertainty, not a confidence interval.
"""
from __future__ import annotations

from typing import Any

import xarray as xr

from geoslide.errors import NotAnEnsembleError
from geoslide.store.attrs import PROVENANCE_ATTR

STD_SUFFIX = "_std"
"""The spread of map ``<name>`` is the variable ``<name>_std``."""


def members(model: Any) -> int:
    """Members of a seed-ensemble model (a TrainedModel or a torch module); 1 for a single
    model."""
    from geoslide.learn.models.ensemble import Ensemble

    module = getattr(model, "module", model)
    return len(module.members) if isinstance(module, Ensemble) else 1


def check_ensemble(model: Any, path: str = "") -> int:
    """The number of members of ``model``; :class:`NotAnEnsembleError` for a single model."""
    k = members(model)
    if k < 2:
        where = f" ({path})" if path else ""
        raise NotAnEnsembleError(
            f"the spread over an ensemble's members needs a seed-ensemble model; found a single "
            f"{getattr(model, 'name', 'model')} model{where}; fix: train an ensemble with "
            "`geoslide train STORE --ensemble N` (N >= 2; Python: train(..., "
            "overrides={'ensemble': N})), or predict without --spread (spread=False)")
    return k


def with_spread(mean: xr.DataArray, std: Any, k: int) -> xr.Dataset:
    """A Dataset of the ensemble map ``mean`` and its spread ``std`` (an array on its grid),
    named ``<name>_std``, with the mean's attrs and a provenance of its own (``"output":
    "std"``), so that the store's writer tells the two apart."""
    sd = mean.copy(data=std)
    sd.name = f"{mean.name}{STD_SUFFIX}"
    sd.attrs.update({
        "long_name": "spread of the ensemble members' landslide susceptibility",
        "description": f"population standard deviation of the {k} seed members' probabilities "
                       "(0: they agree; at most 0.5)",
        "geoslide:members": k,
        PROVENANCE_ATTR: {**mean.attrs[PROVENANCE_ATTR], "output": "std"},
    })
    mean.attrs["geoslide:members"] = k
    return xr.Dataset({mean.name: mean, sd.name: sd})


def is_spread(var: xr.DataArray) -> bool:
    """True for a spread map written by ``predict(..., spread=True)``."""
    prov = var.attrs.get(PROVENANCE_ATTR)
    return isinstance(prov, dict) and prov.get("output") == "std"


__all__ = ["members", "check_ensemble", "with_spread", "is_spread", "STD_SUFFIX"]

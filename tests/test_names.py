"""Names geoslide gives things (geoslide.names)."""
from __future__ import annotations

import pytest

from geoslide.names import AlignedName, aligned_name, is_aligned, parse_aligned


@pytest.mark.parametrize("name, want", [
    ("slope_up30", AlignedName("slope", 30.0)),
    ("geology_3_up100", AlignedName("geology_3", 100.0)),
    ("dz_up12.5", AlignedName("dz", 12.5)),
    ("slope", None), ("slope_up", None), ("azimuth_up30@sin", None),
])
def test_parse_aligned(name, want):
    assert parse_aligned(name) == want


def test_aligned_name_parses_back():
    assert parse_aligned(aligned_name("slope", 30)) == AlignedName("slope", 30.0)
    assert parse_aligned(aligned_name("slope", 12.5)) == AlignedName("slope", 12.5)
    assert is_aligned("azimuth_up30@sin") and not is_aligned("slope")

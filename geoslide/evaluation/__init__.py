"""How good a map is and why: scores against peers, intervals, importance, reports and
figures. Imports every layer below it.

- :mod:`.evaluate`: ``evaluate`` on a split's test pixels, with the peers;
- :mod:`.peers`: scikit-learn logistic regression and random forests on the same inputs;
- :mod:`.intervals`: the spatial block bootstrap; :mod:`.crossval`: every fold of a k-fold split;
- :mod:`.explain`: permutation importance per input group;
- :mod:`.report`, :mod:`.plots`, :mod:`.maps_plot`: report.md, metrics.json and the figures.
"""

"""Models and their training, saved as model files. Imports the layers below it (errors,
names, parallel, store, io, features, prepare).

- :mod:`.inputs`: which variables feed a model, their standardisation, the (C, H, W) array;
- :mod:`.splits`: train / validation / test masks (bands, the paper's windows, k folds);
- :mod:`.patches`: patches for the CNNs, sampled region by region;
- :mod:`.models`: the six models (Random, LLR, NN, SANN, CNN, SACNN) and seed ensembles;
- :mod:`.presets`: the paper's and the quick settings;
- :mod:`.metrics`: NLL, AUC and the other scores models are chosen and judged by;
- :mod:`.calibration`, :mod:`.health`: output bias refits; checks that training learnt;
- :mod:`.train`: ``train``; :mod:`.modelfile`: ``save_model`` / ``load_model``.
"""

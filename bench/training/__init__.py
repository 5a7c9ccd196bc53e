"""The shared training pipeline and one trainer module per model.

Library modules: :mod:`bench.training.data` (image folders with the
evaluation-image guard, holdout split, patch samplers) and
:mod:`bench.training.loop` (step loop, time budget, resume, saves, progress,
log). Every other module is a trainer: it declares its model, loss and
configuration and registers a click command with
``@register_trainer(name)`` (``bench train NAME``). Importing this package
imports them all, so :func:`bench.registry.available` ("trainer") lists them.
"""

import importlib
import pkgutil

_LIBRARY = {"data", "loop", "deflow_demo"}

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name not in _LIBRARY:
        importlib.import_module(f"{__name__}.{_module.name}")

"""Method families: the base classes that several plugins share (``dmsp``/``daep``, ``srflow4x``/``srflow8x``).

They sit below the plugins and beside :mod:`bench.solvers`, which holds generic algorithms only: a family is
method-specific code that two plugin files would otherwise duplicate (plugins never import each other).
"""

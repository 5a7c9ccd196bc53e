"""restoration-bench: benchmark image restoration priors on equal terms.

The pipeline is dataset -> degradation -> method -> metrics -> store -> report.
"""

import os

# Before torch is imported: OpenMP threads that busy-wait make small tensor operations 10-50×
# slower whenever another process shares the cores (measured: all four metrics on a 256² pair
# 2.4 s -> 80 ms on 2 loaded cores). A user's explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

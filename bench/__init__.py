"""restoration-bench: benchmark image restoration priors on equal terms.

The pipeline is dataset -> degradation -> method -> metrics -> store -> report.
"""

__version__ = "0.1.0"

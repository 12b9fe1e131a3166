"""wrn: the training worker (one MindSpore process per device).

Importing this package is cheap: nothing here imports MindSpore until a model, dataset or
training function is actually used, so the launcher can read events and configs without it.
"""

__version__ = "0.3.0"

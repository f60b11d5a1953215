"""Heavy imports made without the garbage collector walking them again and again."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_imports() -> Iterator[None]:
    """The block's imports made with the garbage collector off, then frozen (gc.freeze), so that
    no collection walks them again.

    Collecting while hundreds of thousands of objects import walks the growing heap again and
    again: for the command's imports (Prefect's client, TensorFlow, Keras, MLflow: some 700,000
    objects) 1.5 s of the 6.4 s they took on 2 cores; for Prefect's server process, 0.5-0.8 s of
    its 3.7-3.9 s boot. What the imports leave as garbage (about 14 MB) stays."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()

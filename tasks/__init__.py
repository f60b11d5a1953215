"""activation-lab's work: the functions (and the Prefect tasks that wrap them) the flow wires up."""

import os

# TensorFlow's C++ start-up chatter (CPU feature notes, oneDNN banners) drowns the run log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

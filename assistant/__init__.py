"""search-assistant: a small local model that searches, reads and answers with citations.

Run `assistant ask "Who painted The Night Watch?"` after `make install`; see README.md.
"""

import os

# Set before torch or llama_cpp loads OpenMP. By default OpenMP threads spin-wait long: two llama.cpp processes on
# 2 cores decoded at 1.3 tok/s each in one run here (34 in another); OMP_WAIT_POLICY=PASSIVE avoids that but costs
# 3x on an idle CPU (SmolLM2: 27 against 85 tok/s). A short spin keeps most of both (68 idle, 35 each when two
# run): `python bench/omp_wait.py`. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "500")

__version__ = "0.1.0"

"""Import first (before numpy, faiss): holds BLAS and OpenMP to one thread in this process and its children.

Thread pools read these variables once, when their library loads: set later (in ``main``), they miss
numpy's BLAS, whose idle threads then spin and inflate CPU-time figures on a loaded machine.
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

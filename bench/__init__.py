"""Benchmarks, each ``python -m bench.NAME --json``.

On a CPU shared with other jobs, OpenMP threads that spin while waiting make training up to
~6x slower (measured: 200 vs 1,278 tokens/s for ``small`` on 2 busy cores); passive waiting
avoids that. It only takes effect before torch is imported, hence here.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

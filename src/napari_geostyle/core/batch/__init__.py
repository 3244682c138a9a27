"""Batch geometric style transfer on Dask: folders, videos and stacks, resumable."""

from .plan import (
    GPU_GEOMETRY_BATCH,
    WORKERS_PER_CORE,
    BatchResult,
    BatchRun,
    batch_geometric_style_transfer,
)

__all__ = [
    "GPU_GEOMETRY_BATCH",
    "WORKERS_PER_CORE",
    "BatchResult",
    "BatchRun",
    "batch_geometric_style_transfer",
]

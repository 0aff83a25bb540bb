"""The name the fast-path switch had before ``portable_nn.kernels``; kept so old scripts run."""

from .kernels import fast_paths, fast_paths_enabled, set_fast_paths

__all__ = ["fast_paths", "fast_paths_enabled", "set_fast_paths"]

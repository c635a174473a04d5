"""LLM backends as every process sees them: config, the backends file, routing, probing."""

from shared.backends.config import (
    bundled_model_path,
    configured_backends,
    default_backend,
    local_model_file,
)
from shared.backends.types import (
    BackendConfig,
    BackendError,
    ChatRequest,
    ChatResult,
    PermanentBackendError,
    TransientBackendError,
)

__all__ = [
    "BackendConfig",
    "BackendError",
    "ChatRequest",
    "ChatResult",
    "PermanentBackendError",
    "TransientBackendError",
    "bundled_model_path",
    "configured_backends",
    "default_backend",
    "local_model_file",
]

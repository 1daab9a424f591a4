"""Models: what training produces and serving consumes.

``spec`` (``ModelSignature``, the built-in model names; light), ``builtin`` (the built-in models'
inputs, hyperparameters and networks), ``encoding`` (columns → model input, outputs → values:
``encode_columns``, ``predict``), ``registry`` (versions, aliases, downloads), ``artifact`` (a
version's files: ``register_version``, ``load_model``, ``verify_version``, ``model_from_files``)
and ``sdk`` (``p.models``). Training writes here; serving, batch inference and the clients read.

May import: ``dlplatform.errors``, ``access``, ``context``, ``metadata`` (and torch, numpy,
pyarrow). Never ``train``, ``serve``, ``workflows`` or Ray.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.models.artifact import (
        load_model,
        model_from_files,
        register_version,
        verify_version,
    )
    from dlplatform.models.builtin import build_model
    from dlplatform.models.encoding import encode_columns, predict
    from dlplatform.models.registry import (
        alias_history,
        get_version,
        list_models,
        list_versions,
        promote,
        read_model_object,
        resolve_version,
    )
    from dlplatform.models.sdk import ModelsClient
    from dlplatform.models.spec import BUILTIN_MODELS, ModelSignature

# Loaded on first use (see dlplatform._lazy): importing the signature must not load torch.
_EXPORTS = {
    "BUILTIN_MODELS": "dlplatform.models.spec",
    "ModelSignature": "dlplatform.models.spec",
    "ModelsClient": "dlplatform.models.sdk",
    "alias_history": "dlplatform.models.registry",
    "build_model": "dlplatform.models.builtin",
    "encode_columns": "dlplatform.models.encoding",
    "get_version": "dlplatform.models.registry",
    "list_models": "dlplatform.models.registry",
    "list_versions": "dlplatform.models.registry",
    "load_model": "dlplatform.models.artifact",
    "model_from_files": "dlplatform.models.artifact",
    "predict": "dlplatform.models.encoding",
    "promote": "dlplatform.models.registry",
    "read_model_object": "dlplatform.models.registry",
    "register_version": "dlplatform.models.artifact",
    "resolve_version": "dlplatform.models.registry",
    "verify_version": "dlplatform.models.artifact",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BUILTIN_MODELS",
    "ModelSignature",
    "ModelsClient",
    "alias_history",
    "build_model",
    "encode_columns",
    "get_version",
    "list_models",
    "list_versions",
    "load_model",
    "model_from_files",
    "predict",
    "promote",
    "read_model_object",
    "register_version",
    "resolve_version",
    "verify_version",
]

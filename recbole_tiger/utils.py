"""Model resolution by name: this plugin's models first, then RecBole's (as RecBole-GNN does).

Model modules are found by file name and imported when a name is resolved (RecBole's own
``get_model`` works the same way), so importing this module, or ``Config``, imports no model.
"""
import importlib
import os
import pkgutil

import recbole.model

# Same sub-package names in both packages: model/<type>_recommender/<lowercase name>.py
_MODEL_SUBMODULES = [
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
]


# This plugin's model package, named rather than imported (see the module docstring).
PLUGIN_MODEL_PACKAGE = "recbole_tiger.model"
_PLUGIN_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")


def _module_names(package_name, package_dir):
    """{lowercase model file name: module path} for every model file of a model package.

    Reads the directory listing instead of importing, because importing RecBole's
    ``exlib_recommender`` needs optional xgboost/lightgbm (that is why RecBole's own
    ``get_model`` answers an unknown name with ``ModuleNotFoundError: lightgbm``).
    """
    found = {}
    for sub in _MODEL_SUBMODULES:
        for info in pkgutil.iter_modules([os.path.join(package_dir, sub)]):
            found.setdefault(info.name, f"{package_name}.{sub}.{info.name}")
    return found


def _model_packages():
    """(package name, directory): the plugin's first, then RecBole's."""
    return [(PLUGIN_MODEL_PACKAGE, _PLUGIN_MODEL_DIR),
            (recbole.model.__name__, os.path.dirname(recbole.model.__file__))]


def available_models():
    """Model names accepted by ``--model``, plugin models first."""
    recbole_props = os.path.join(os.path.dirname(recbole.model.__file__), "..", "properties", "model")
    recbole_names = {f[: -len(".yaml")] for f in os.listdir(recbole_props) if f.endswith(".yaml")}
    recbole_modules = _module_names(*_model_packages()[1])
    plugin = sorted(_plugin_class_names())
    builtin = sorted(n for n in recbole_names if n.lower() in recbole_modules and n not in plugin)
    return plugin + builtin


def _plugin_class_names():
    """Our model files are few and import cheaply: list the class each one is named after."""
    names = []
    for file_name, module_path in _module_names(*_model_packages()[0]).items():
        module = importlib.import_module(module_path)
        names += [n for n in dir(module) if n.lower() == file_name]
    return names


class UnknownModelError(ValueError):
    """``--model`` names no model of this plugin or of RecBole."""


def get_model(model_name):
    """Return the model class for `model_name`: ours if we define it, else RecBole's."""
    for package in _model_packages():
        module_path = _module_names(*package).get(model_name.lower())
        if module_path is None:
            continue
        module = importlib.import_module(module_path)
        if hasattr(module, model_name):
            return getattr(module, model_name)
        classes = [n for n in dir(module) if n.lower() == model_name.lower()]
        hint = f" Did you mean '{classes[0]}'?" if classes else ""
        raise UnknownModelError(f"Model module {module_path} has no class '{model_name}'.{hint}")
    raise UnknownModelError(
        f"Unknown model '{model_name}'. Available models: {', '.join(available_models())}"
    )

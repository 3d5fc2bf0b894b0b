"""Model, dataset and trainer resolution: this plugin first, then RecBole (as RecBole-GNN does)."""
import importlib
import os
import pkgutil

import recbole.model
from recbole.data import create_dataset as recbole_create_dataset
from recbole.utils import get_trainer as recbole_get_trainer

import recbole_tiger.model
from recbole_tiger.trainer import with_plugin_mixins

# Same sub-package names in both packages: model/<type>_recommender/<lowercase name>.py
_MODEL_SUBMODULES = [
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
]


def _module_names(package):
    """{lowercase model file name: module path} for every model file of `package`.

    Reads the directory listing instead of importing, because importing RecBole's
    ``exlib_recommender`` needs optional xgboost/lightgbm (that is why RecBole's own
    ``get_model`` answers an unknown name with ``ModuleNotFoundError: lightgbm``).
    """
    found = {}
    for sub in _MODEL_SUBMODULES:
        path = os.path.join(os.path.dirname(package.__file__), sub)
        for info in pkgutil.iter_modules([path]):
            found.setdefault(info.name, f"{package.__name__}.{sub}.{info.name}")
    return found


def available_models():
    """Model names accepted by ``--model``, plugin models first."""
    recbole_props = os.path.join(os.path.dirname(recbole.model.__file__), "..", "properties", "model")
    recbole_names = {f[: -len(".yaml")] for f in os.listdir(recbole_props) if f.endswith(".yaml")}
    recbole_modules = _module_names(recbole.model)
    plugin = sorted(_plugin_class_names())
    builtin = sorted(n for n in recbole_names if n.lower() in recbole_modules and n not in plugin)
    return plugin + builtin


def _plugin_class_names():
    """Our model files are few and import cheaply: list the class each one is named after."""
    names = []
    for file_name, module_path in _module_names(recbole_tiger.model).items():
        module = importlib.import_module(module_path)
        names += [n for n in dir(module) if n.lower() == file_name]
    return names


class UnknownModelError(ValueError):
    """``--model`` names no model of this plugin or of RecBole."""


def get_model(model_name):
    """Return the model class for `model_name`: ours if we define it, else RecBole's."""
    for package in (recbole_tiger.model, recbole.model):
        module_path = _module_names(package).get(model_name.lower())
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


def create_dataset(config):
    """The dataset for ``config['model']``: ``recbole_tiger.data.dataset.<Model>Dataset`` if we
    define one (TIGER's owns the semantic IDs), else RecBole's choice (and its saved-dataset
    cache)."""
    dataset_class = getattr(importlib.import_module("recbole_tiger.data.dataset"), config["model"] + "Dataset", None)
    if dataset_class is None:
        return recbole_create_dataset(config)
    dataset = dataset_class(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


def get_trainer(model_type, model_name):
    """Trainer class for a model: ``recbole_tiger.trainer.<Model>Trainer`` if it exists,
    else RecBole's choice; either way with the plugin's mixins (time budget, resume, eval protocol)."""
    plugin_trainers = importlib.import_module("recbole_tiger.trainer")
    trainer_class = getattr(plugin_trainers, model_name + "Trainer", None)
    if trainer_class is None:
        trainer_class = recbole_get_trainer(model_type, model_name)
    return with_plugin_mixins(trainer_class)

"""RecBole's Config, with this plugin's models and layered property files.

Precedence, later wins (RecBole's own semantics, with our layers inserted as
"internal" defaults so that every user-facing way of setting a key still overrides them):

    RecBole's built-in defaults
    → properties/overall.yaml
    → properties/model/<Model>.yaml
    → properties/dataset/<dataset>.yaml
    → --config_files / config_file_list
    → config_dict
    → command-line --key=value
"""
import os

from recbole.config import Config as RecBoleConfig

from recbole_tiger.utils import get_model

# Shipped inside the package (the repository's top-level properties/ links here), so a
# non-editable `pip install .` finds them too.
PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")


def property_files(model, dataset, base=None):
    """The plugin's yaml layers for (model, dataset), lowest precedence first; ``base``: the model
    whose property file a model builds on (its class's ``base_properties``), loaded before its own."""
    return [
        os.path.join(PROPERTIES_DIR, "overall.yaml"),
        *([os.path.join(PROPERTIES_DIR, "model", f"{base}.yaml")] if base else []),
        os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
        os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"),
    ]


# RecBole's own default (recbole/properties/overall.yaml): one uniform negative per positive.
RECBOLE_TRAIN_NEG_SAMPLE_ARGS = {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False,
                                 "candidate_num": 0}


def resolve_property_file(path):
    """``properties/...`` paths work from anywhere: a file that is not there relative to the
    working directory is looked up in the installed package's property files (so the README's
    commands also work after a non-editable ``pip install .``, outside the source tree)."""
    if os.path.isfile(path):
        return path
    parts = os.path.normpath(path).split(os.sep)
    if parts and parts[0] == "properties":
        packaged = os.path.join(PROPERTIES_DIR, *parts[1:])
        if os.path.isfile(packaged):
            return packaged
    return path


class Config(RecBoleConfig):
    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        if config_file_list:
            config_file_list = [resolve_property_file(f) for f in config_file_list]
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if isinstance(model, str):
            # Resolve the name ourselves so plugin models win; RecBole accepts a class.
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        files = property_files(model, dataset, getattr(model_class, "base_properties", None))
        overall, dataset_file = files[0], files[-1]
        if not os.path.isfile(overall):
            raise FileNotFoundError(
                f"recbole_tiger property files not found at {PROPERTIES_DIR}: the installation is "
                "incomplete; reinstall the plugin (`pip install .` or `pip install -e .` in its source tree)"
            )
        for file in files:
            if os.path.isfile(file):
                loaded = self._update_internal_config_dict(file) or {}
                if file == dataset_file:
                    self.parameters["Dataset"] += [
                        k for k in loaded if k not in self.parameters["Dataset"]
                    ]

    def _init_device(self):
        """RecBole's, except that distributed ranks without CUDA use gloo on the CPU
        (RecBole 1.2.1 hard-codes nccl and CUDA devices)."""
        import torch

        cfg = self.final_config_dict
        if "local_rank" in cfg and (not torch.cuda.is_available() or cfg.get("use_gpu") is False):
            from recbole_tiger.compat import init_cpu_process_group

            init_cpu_process_group(cfg)
            return
        super()._init_device()

    def _set_default_parameters(self):
        # RecBole's default samples one negative per positive, then rejects that for its own
        # cross-entropy sequential models (GRU4Rec, NARM, ... run with their defaults fail with
        # "train_neg_sample_args ... should be None when the loss_type is CE"): unless the
        # user set the key, cross-entropy trains without sampling, as it must.
        cfg = self.final_config_dict
        if (str(cfg.get("loss_type")).upper() == "CE" and cfg.get("train_neg_sample_args") is not None
                and "train_neg_sample_args" not in self.external_config_dict):
            cfg["train_neg_sample_args"] = None
        super()._set_default_parameters()

    def _set_train_neg_sample_args(self):
        """Our model files switch negative sampling off for cross-entropy (RecBole requires that:
        e.g. properties/model/SASRec.yaml). A user who switches such a model to a pairwise loss
        (``loss_type: BPR``) gets RecBole's default sampling back instead of a KeyError on
        ``neg_item_id`` at the first batch; one who also turned sampling off explicitly gets an
        error that names the key."""
        loss = self.final_config_dict.get("loss_type")
        sampling = self.final_config_dict.get("train_neg_sample_args")
        if loss is not None and str(loss).upper() != "CE" and sampling in (None, "None"):
            if self.external_config_dict.get("train_neg_sample_args", "unset") in (None, "None"):
                raise ValueError(
                    f"loss_type: {loss} trains on negative samples, but train_neg_sample_args is ~ (off); "
                    "set e.g. train_neg_sample_args: {distribution: uniform, sample_num: 1}, or loss_type: CE."
                )
            self.final_config_dict["train_neg_sample_args"] = dict(RECBOLE_TRAIN_NEG_SAMPLE_ARGS)
        super()._set_train_neg_sample_args()

"""HyperTuning with plugin models: RecBole's HyperTuning driven by our objective_function."""
import os

import yaml
from recbole.trainer import HyperTuning

from recbole_tiger.atomic_io import open_atomic
from recbole_tiger.quick_start import objective_function


def run_hyper(
    params_file, model=None, dataset=None, config_file_list=None, algo="exhaustive", max_evals=100,
    early_stop=10, output_file=None,
):
    """Search `params_file` (RecBole's format: ``name choice [..]`` / ``name loguniform a,b`` …).

    Every trial is logged by RecBole and written to `output_file`; the best parameters are
    also written as ``<output_file>.best.yaml``, ready to pass back with ``--config_files``.
    `model`/`dataset` may also come from the config files. Returns the HyperTuning object
    (``best_params``, ``params2result``).
    """
    fixed = {k: v for k, v in (("model", model), ("dataset", dataset)) if v is not None}

    def objective(params, fixed_config_files):
        return objective_function({**fixed, **params}, fixed_config_files)

    hp = HyperTuning(
        objective,
        algo=algo,
        early_stop=early_stop,
        max_evals=max_evals,
        params_file=params_file,
        fixed_config_file_list=config_file_list,
    )
    hp.run()
    if output_file:
        os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
        hp.export_result(output_file=output_file)
        best = {k: _plain(v) for k, v in hp.best_params.items()}
        with open_atomic(output_file + ".best.yaml") as f:
            yaml.safe_dump(best, f, sort_keys=True)
    print("best params: ", hp.best_params)
    print("best result: ")
    print(hp.params2result[hp.params2str(hp.best_params)])
    return hp


def _plain(value):
    """numpy scalars (hyperopt's samples) → plain Python for yaml."""
    return value.item() if hasattr(value, "item") else value

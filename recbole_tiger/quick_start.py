"""Library entry points behind ``run_recbole_tiger.py`` and ``run_hyper.py``.

They follow RecBole's ``recbole.quick_start`` function for function, with three
differences: models and trainers resolve plugin-first (``--model=TIGER`` and every
RecBole model), configs get our layered ``properties/``, and the result also carries what
a benchmark needs (epochs, wall times, learning curve, parameter count).
"""
import logging
import os
import sys
from logging import getLogger
from time import time

from recbole.data import data_preparation
from recbole.data.transform import construct_transform
from recbole.utils import get_environment, get_flops, init_logger, init_seed, set_color

from recbole_tiger.compat import load_checkpoint
from recbole_tiger.config import Config
from recbole_tiger.data import dataset_not_found_message, ensure_dataset
from recbole_tiger.data.dataset import attach_training_counts, create_dataset
from recbole_tiger.trainer import get_trainer
from recbole_tiger.utils import get_model


def prepare_data(config):
    """Create the RecBole dataset (preparing Amazon raw files first if needed) and split it."""
    data_root, name = os.path.split(os.path.normpath(config["data_path"]))
    ensure_dataset(name, data_root, logger=getLogger())
    if not os.path.isfile(os.path.join(config["data_path"], f"{name}.inter")):
        raise FileNotFoundError(dataset_not_found_message(name, data_root))
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    attach_training_counts(train_data._dataset, valid_data._dataset, test_data._dataset)
    return dataset, train_data, valid_data, test_data


def build_model(config, train_data):
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    return get_model(config["model"])(config, train_data._dataset).to(config["device"])


def build_trainer(config, model):
    """The model's trainer; with ``resume_from`` set, continued from that checkpoint."""
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    resume_from = trainer.run_settings.resume_from
    if resume_from:
        if not os.path.isfile(resume_from):
            raise FileNotFoundError(f"resume_from={resume_from}: no such checkpoint (a run writes "
                                    "<checkpoint_dir>/<Model>-<time>.resume.pth after every epoch)")
        trainer.resume_checkpoint(resume_from)
    return trainer


def run_recbole_tiger(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True,
                      test_protocols=None):
    """Train, validate and test one model; RecBole's ``run_recbole`` with plugin models.

    ``test_protocols``: also test the best checkpoint under these evaluation protocols
    (``repeatable``, ``exclude_history``; the run's own, ``eval_exclude_history``, always).
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset, train_data, valid_data, test_data = prepare_data(config)
    logger.info(dataset)

    model = build_model(config, train_data)
    logger.info(model)
    try:
        flops = get_flops(model, dataset, config["device"], logger, construct_transform(config))
        logger.info(set_color("FLOPs", "blue") + f": {flops}")
    except Exception as err:  # thop cannot trace every model; FLOPs are informative only
        logger.warning(f"FLOPs not counted: {err}")

    trainer = build_trainer(config, model)
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    test_start = time()
    test_result, test_results, beam_check, test_seconds = None, {}, None, 0.0
    paused = getattr(trainer, "paused", False)  # train_session_limit: the run goes on later, test then
    if not paused and hasattr(trainer, "choose_on_valid"):  # ranking settings chosen on valid (TIGER)
        best_valid_score, best_valid_result = trainer.choose_on_valid(valid_data, saved, best_valid_score,
                                                                      best_valid_result)
    if not paused:
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        test_seconds = time() - test_start
        # The same checkpoint under other evaluation protocols (e.g. exclude_history), on request.
        test_results = {trainer.protocol: test_result}
        for protocol in test_protocols or ():
            if protocol not in test_results:
                trained_protocol = trainer.protocol
                trainer.set_protocol(protocol)
                test_results[protocol] = trainer.evaluate(test_data, load_best_model=saved,
                                                          show_progress=config["show_progress"])
                logger.info(set_color(f"test result ({protocol})", "yellow") + f": {test_results[protocol]}")
                trainer.set_protocol(trained_protocol)
        if config["local_rank"] == 0 and hasattr(trainer, "beam_check"):  # one rank is enough for a sample
            beam_check = trainer.beam_check(test_data)
    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + (f": {test_result}" if not paused else
                                                      ": not tested yet (paused by train_session_limit)"))
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "protocol": trainer.protocol,
        "test_results": test_results,
        "epochs": trainer.epochs_done,
        "budget_exhausted": trainer.budget_exhausted,
        "stopped_by": getattr(trainer, "stopped_by", "epochs"),
        "paused": paused,
        "train_seconds": trainer.train_seconds,
        "fit_seconds": trainer.fit_seconds,
        "test_seconds": test_seconds,
        "valid_curve": trainer.valid_curve,
        "beam_check": beam_check,
        "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "saved_model_file": trainer.saved_model_file if saved else None,
        "resume_file": trainer.resume_file if saved else None,
        "config": config,
    }


def run(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, nproc=1, world_size=-1,
        ip="localhost", port="5678", group_offset=0):
    """``run_recbole_tiger`` in one process, or RecBole's distributed training: ``nproc`` processes
    on this machine (ranks ``group_offset`` ..), ``world_size`` processes over all machines
    (default ``nproc``), rendezvous at ``ip:port``. RecBole's ``recbole.quick_start.run`` with
    plugin models; each rank uses one GPU if CUDA is available, else the CPU (gloo). Returns
    rank 0's result (on the machine with group_offset 0)."""
    if nproc == 1 and world_size <= 0:
        return run_recbole_tiger(model, dataset, config_file_list, config_dict, saved)
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = {**(config_dict or {}), "world_size": nproc if world_size == -1 else world_size, "ip": ip,
                   "port": str(port), "nproc": nproc, "offset": group_offset}
    mp.spawn(_run_rank, args=(model, dataset, config_file_list, config_dict, saved, queue), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def _run_rank(rank, model, dataset, config_file_list, config_dict, saved, queue):
    result = run_recbole_tiger(model, dataset, config_file_list, {**config_dict, "local_rank": rank}, saved)
    if rank == 0 and config_dict["offset"] == 0:
        queue.put(result)


def objective_function(config_dict=None, config_file_list=None, saved=True):
    """HyperTuning objective: RecBole's ``objective_function`` with plugin models."""
    config = Config(config_dict=config_dict, config_file_list=config_file_list)
    init_seed(config["seed"], config["reproducibility"])
    logger = getLogger()
    for handler in logger.handlers[:]:  # RecBole re-initialises logging per trial
        logger.removeHandler(handler)
    init_logger(config)
    logging.basicConfig(level=logging.ERROR)
    _, train_data, valid_data, test_data = prepare_data(config)
    model = build_model(config, train_data)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, verbose=False, saved=saved)
    if hasattr(trainer, "choose_on_valid"):
        best_valid_score, best_valid_result = trainer.choose_on_valid(valid_data, saved, best_valid_score,
                                                                      best_valid_result)
    test_result = trainer.evaluate(test_data, load_best_model=saved)
    return {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }


def add_missing_defaults(config):
    """Keys the plugin's properties define today that a checkpoint's ``config`` lacks (it was
    written by an older version) get today's defaults for its model and dataset; returns them."""
    data_root = os.path.dirname(os.path.normpath(config["data_path"]))
    argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config also reads the command line: not a default
    try:
        current = Config(model=config["model"], dataset=config["dataset"], config_dict={"data_path": data_root})
    finally:
        sys.argv = argv
    added = sorted(set(current.final_config_dict) - set(config.final_config_dict))
    for key in added:
        config[key] = current[key]
    return added


def load_data_and_model(model_file):
    """Rebuild config, data splits and the trained model from a checkpoint file."""
    checkpoint = load_checkpoint(model_file)
    config = checkpoint["config"]
    # numpy aliases (np.float, ...) RecBole's metrics still use: a Config sets them when it is
    # built, not when it is unpickled, so a fresh process would fail at its first evaluation.
    config.compatibility_settings()
    if not config["single_spec"]:  # a checkpoint of distributed training, loaded in one process
        config["single_spec"], config["world_size"] = True, 1
    added = add_missing_defaults(config)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    if added:
        logger.info(f"{model_file} was written before these settings existed; they take today's defaults: "
                    + ", ".join(f"{k}={config[k]}" for k in added))
    logger.info(config)
    dataset, train_data, valid_data, test_data = prepare_data(config)
    logger.info(dataset)
    model = build_model(config, train_data)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data

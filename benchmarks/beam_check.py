"""How far constrained beam search is from exact ranking, for a trained TIGER checkpoint.

    python -m benchmarks.beam_check --model_file=saved/TIGER-....pth [--n_users=256] [--split=test]

Loads the checkpoint with its own config and data split, scores the first ``n_users`` users
of the split both ways (beam search with the checkpoint's beam_size; exact log-likelihood of
every item ID) and prints, per K in ``topk``, the share of users whose top-K sets differ and
the mean overlap. The benchmark reports the same figures for the runs it makes.
"""
import argparse
import json

from recbole_tiger.quick_start import load_data_and_model
from recbole_tiger.trainer.beam_check import beam_vs_exact


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--n_users", type=int, default=256)
    parser.add_argument("--split", choices=["valid", "test"], default="test")
    args = parser.parse_args(argv)

    config, model, _, _, valid_data, test_data = load_data_and_model(args.model_file)
    result = beam_vs_exact(model, test_data if args.split == "test" else valid_data, args.n_users)
    if result is None:
        raise SystemExit(f"beam_check: {args.model_file} holds a {config['model']} model with "
                         f"eval_mode={getattr(getattr(model, 'settings', None), 'eval_mode', None)}; needs TIGER with eval_mode beam.")
    print(json.dumps({"model_file": args.model_file, "split": args.split, "beam_size": model.settings.beam_size, **result}))


if __name__ == "__main__":
    main()

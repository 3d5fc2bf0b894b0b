"""Look at a TIGER checkpoint in the browser (localhost only, no analytics).

    python -m recbole_tiger.demo --model_file=saved/TIGER-….pth [--baseline_file=saved/SASRec-….pth]
        [--results_dir=results] [--port=7860]
"""
import argparse
import os
import sys
import time


def main(argv=None):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_file", required=True, help="a TIGER checkpoint (saved/TIGER-….pth)")
    parser.add_argument("--baseline_file", default=None, help="another model's checkpoint on the same dataset")
    parser.add_argument("--results_dir", default="results")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config must not read the demo's flags

    from recbole_tiger.demo.app import build_app
    from recbole_tiger.demo.backend import DemoBackend, DemoError

    start = time.time()
    backend, error = None, None
    try:
        backend = DemoBackend(args.model_file, args.baseline_file, args.results_dir)
    except DemoError as err:
        error = str(err)
    print(f"demo: loaded in {time.time() - start:.1f}s" if backend else f"demo: {error}", flush=True)
    build_app(backend, error).launch(server_name="127.0.0.1", server_port=args.port, share=False)


if __name__ == "__main__":
    main()

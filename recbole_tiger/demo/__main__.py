"""Look at a TIGER checkpoint in the browser (localhost only, no analytics).

    python -m recbole_tiger.demo --model_file=saved/TIGER-….pth [--baseline_file=saved/SASRec-….pth]
        [--lm=saved/llm/<dataset>/model] [--results_dir=results] [--port=7860]
"""
import argparse
import os
import sys
import time


def language_model_answerer(model_dir, error_type):
    """query -> table rows from a fine-tuned LM (``llm.ask.load_answerer``: LM + retrieval for a
    constraint model); its failures become ``error_type``."""
    from recbole_tiger.llm.ask import answer_rows, load_answerer

    decoder = load_answerer(model_dir)

    def answer(query):
        try:
            return answer_rows(decoder, query)
        except (ValueError, RuntimeError) as err:
            raise error_type(f"the language model could not answer: {err}") from err
    return answer


def main(argv=None):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_file", required=True, help="a TIGER checkpoint (saved/TIGER-….pth)")
    parser.add_argument("--baseline_file", default=None, help="another model's checkpoint on the same dataset")
    parser.add_argument("--lm", default=None, help="a language model fine-tuned by recbole_tiger.llm.finetune "
                                                   "(enables the Query view)")
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
    lm_answer = language_model_answerer(args.lm, DemoError) if args.lm and backend else None
    print(f"demo: loaded in {time.time() - start:.1f}s" if backend else f"demo: {error}", flush=True)
    build_app(backend, error, lm_answer).launch(server_name="127.0.0.1", server_port=args.port, share=False)


if __name__ == "__main__":
    main()

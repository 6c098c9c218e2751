"""Trained models shipped with the kit, so the main job runs without training first.

``dualgate-tcn-tiny/`` is a saved model folder (``config.json`` + ``model.weights.h5``,
readable by :func:`tinysep.models.load_model` and ``tinysep eval --method model:PATH``)
plus ``training.json``: the command that trained it, how long it took, its test-split SDRs
and, per music engine, its margin over the classic methods (engines it never trained on kept
apart, under ``test.held_out``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tinysep.jsonfile import read_json, write_json_atomic
from tinysep.model_record import FINE_TUNED_FROM, RUN_FILE, TRAINING_FILE, trained_config

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "dualgate-tcn-tiny"


def available() -> list[str]:
    """Names of the shipped model folders."""
    return sorted(p.name for p in PACKAGE_DIR.iterdir() if (p / "config.json").is_file())


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """The folder of the shipped model ``name`` (error listing the shipped ones if absent)."""
    folder = PACKAGE_DIR / name
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no shipped model {name!r} in {PACKAGE_DIR}; "
                                f"shipped: {available() or 'none'}")
    return folder


def default_model_path() -> Path:
    """The folder of the default shipped model: the trained ``tiny`` ``dualgate-tcn``."""
    return model_path(DEFAULT_MODEL)


def training_record(name: str = DEFAULT_MODEL) -> dict:
    """The ``training.json`` of a shipped model: command, training time, test SDRs."""
    return json.loads((model_path(name) / TRAINING_FILE).read_text())


def training_settings(name: str = DEFAULT_MODEL) -> dict:
    """The ``train_config`` a shipped model was trained with; for a fine-tuned model, that of
    the model it was tuned from; for a weight soup, that of its best ingredient (the first it
    kept), whose recipe the soup's training batches follow."""
    config = trained_config(training_record(name))
    if config is None:
        raise ValueError(f"{model_path(name) / TRAINING_FILE}: records no training settings "
                         f"('train_config', or a soup ingredient's)")
    return config


def ship_model(run: str | Path, eval_report: str | Path, name: str = DEFAULT_MODEL, *,
               held_out_reports: Sequence[str | Path] = (),
               package_dir: str | Path = PACKAGE_DIR) -> Path:
    """Copy the best weights of training run ``run`` (or of a ``tinysep soup`` folder, or of a
    model fine-tuned from either: ``tinysep quantize --qat-steps``'s ``qat_model``) into
    the package as ``name`` and write its ``training.json`` from the run's records (the soup's
    own record) and a ``tinysep eval`` JSON report (the report's ``model:`` method that names
    ``run`` gives the test SDRs).
    ``held_out_reports`` are ``tinysep eval --by-engine`` reports on other corpora whose
    held-out rows (engines the model never trained on) the record keeps as well, so it shows
    music the model never heard when the test corpus holds none.
    ``package_dir`` is where the folder lands (the package itself unless told otherwise).
    """
    import shutil

    run, eval_report = Path(run), Path(eval_report)
    report = read_json(eval_report, "the tinysep eval report to take test scores from")
    method = _model_method(report, run, eval_report)
    held_out = [_held_out_rows(Path(path), run) for path in held_out_reports]
    sources = report["summary"][method]["sources"]
    test = {source: {key: block[key]["mean"] for key in ("sdr", "sir", "sar", "si_sdr")}
            for source, block in sources.items()}
    baselines = {m: {s: b["sdr"]["mean"] for s, b in summary["sources"].items()}
                 for m, summary in report["summary"].items() if m != method}
    training = _run_record(run) if (run / RUN_FILE).is_file() else _folder_record(run)
    folder = Path(package_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    for file in ("config.json", "model.weights.h5"):
        shutil.copyfile(run / file, folder / file)
    training["test"] = {
        "data": report.get("data"),
        "split": report.get("split"),
        "clips": report.get("clips_done"),
        "sdr_sir_sar_mean_db": test,
        "baselines_sdr_mean_db": baselines,
        "eval_command": f"tinysep eval --method {','.join(report.get('methods', []))} "
                        f"--data {report.get('data')} --split {report.get('split')}"
                        + (f" --max-clips {report['max_clips']}" if report.get("max_clips")
                           else "")
                        + (f" --level-db {report['level_db']:g}" if report.get("level_db")
                           else "")
                        + (" --by-engine" if "by_engine" in report else ""),
    }
    if "by_engine" in report:  # per music engine, marked trained / held out
        training["test"]["by_engine"] = report["by_engine"]["rows"]
    if held_out:
        training["test"]["held_out"] = held_out
    write_json_atomic(folder / TRAINING_FILE, training, indent=2)
    return folder


def _model_method(report: dict, run: Path, path: Path) -> str:
    """The report's ``model:`` method that names ``run`` (error naming the report if none)."""
    method = next((m for m in report.get("summary", {})
                   if m.startswith("model:") and Path(m[len("model:"):]).resolve()
                   == run.resolve()), None)
    if method is None:
        raise ValueError(f"{path} holds no 'model:{run}' method to take test scores from")
    return method


def _held_out_rows(path: Path, run: Path) -> dict:
    """The held-out engine rows of a ``--by-engine`` report scored for ``run``."""
    report = read_json(path, "a tinysep eval --by-engine report")
    method = _model_method(report, run, path)
    table = report.get("by_engine")
    if not isinstance(table, dict) or table.get("model") != method:
        raise ValueError(f"{path}: no per-engine table (tinysep eval --by-engine) for {method}")
    rows = [row for row in table.get("rows", []) if row.get("status") == "held out"]
    if not rows:
        raise ValueError(f"{path}: no engine in it is held out from {run}'s training")
    return {"data": report.get("data"), "split": report.get("split"),
            "clips": report.get("clips_done"), "rows": rows}


def _folder_record(folder: Path) -> dict:
    """The record a ``tinysep soup`` folder or a fine-tuned model folder keeps: its command,
    the soup's ingredients or the record of the model it was tuned from, and its corpora."""
    path = folder / TRAINING_FILE
    if not path.is_file():
        raise ValueError(f"{folder}: neither a training run (run.json) nor a soup or a "
                         f"fine-tuned model ({TRAINING_FILE} of tinysep soup, quantize, prune)")
    record = read_json(path, "the record of a soup or a fine-tuned model")
    kinds = ("soup", *FINE_TUNED_FROM)
    if not isinstance(record, dict) or not any(key in record for key in kinds):
        raise ValueError(f"{path}: not the record of a soup or a fine-tuned model (none of "
                         f"{', '.join(repr(k) for k in kinds)})")
    keep = ("command", *kinds, "qat", "corpora")
    return {key: record[key] for key in keep if key in record}


def _run_record(run: Path) -> dict:
    """The record of a training run: its command, settings, corpora and best epoch."""
    record = json.loads((run / RUN_FILE).read_text())
    state = json.loads((run / "state.json").read_text())
    return {
        "command": record.get("command"),
        "resumes": record.get("resumes", []),  # each resume, and the settings it changed
        "train_config": record["train_config"],
        "model": record.get("model"),
        "data_fingerprint": record.get("data_fingerprint"),
        "corpora": record.get("corpora"),
        "versions": record.get("versions"),
        "training": {
            "minutes": round(state["train_seconds"] / 60.0, 2),
            "epochs": state["epoch"],
            "steps": state["step"],
            "stopped": state["stop_reason"],
            "best_epoch": state["best"]["epoch"],
            "valid_sdr": state["best"]["valid_sdr"],
        },
    }

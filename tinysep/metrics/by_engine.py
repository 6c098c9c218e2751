"""Scores per music engine: how a model does on the engines it trained on and on the ones it
never heard, next to the classic methods and the IRM oracle on the same clips.

A synthetic corpus names, per clip, its vocal engine, its accompaniment engine, its
sound font, for a festival song its Festival voice, when the corpus names them its composer,
and for a ``recorded`` song its collection of recordings (``splits.json``); a model folder's
``run.json`` (or a shipped model's ``training.json``) names the corpora and engines it
trained and was selected on. Every clip is counted once per role: under its vocal engine,
its accompaniment engine, its font, its voice, its composer and its collection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from firmware_host.bundle import read_bundle
from firmware_host.bundle.layout import MANIFEST_FILE
from tinysep.data.clip import SOURCES
from tinysep.data.engines import FONT_ENGINES
from tinysep.data.loaders import SPLITS_FILE
from tinysep.data.recordings import COLLECTIONS
from tinysep.data.score import FIRST_COMPOSER
from tinysep.data.soundfont import FONTS
from tinysep.jsonfile import read_json
from tinysep.metrics.paired import INTERVAL, format_bounds, paired_difference
from tinysep.metrics.summary import summarize_methods
from tinysep.model_record import record_file

# The roles a song's engines play in splits.json, and what each role's engine makes: the
# sung part, the played part, the whole song, or (a sound font) whichever part a font engine
# plays.
ROLE_PARTS = {"vocals": "vocals", "accompaniment": "accompaniment", "font": "font",
              "voice": "vocals", "composer": "song", "recording": "accompaniment"}
ROLES = tuple(ROLE_PARTS)
CLASSIC_METHODS = ("hpss", "repet", "repet-sim", "repet-mfcc")
WIDE_PLOT_ROWS = 6  # more rows than this: the plot's panels stack instead of standing side by side
LABEL_SLANT_CHARS = 10  # longer row labels slant in a stacked plot, so they do not overlap
ORACLE = "irm"
TRAINED, SELECTION, HELD_OUT, UNKNOWN = "trained", "selection only", "held out", "not recorded"


def clip_engines(root: str | Path) -> dict[str, dict]:
    """``{clip name: {"vocals": engine, "accompaniment": engine, "font": font or None,
    ["voice": Festival voice]}}``
    from a synthetic corpus's ``splits.json`` (empty when the corpus names no engines)."""
    path = Path(root) / SPLITS_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from exc
    clips = meta.get("clips", {}) if isinstance(meta, dict) else {}
    return {name: dict(entry["engines"]) for name, entry in clips.items()
            if isinstance(entry, dict) and isinstance(entry.get("engines"), dict)}


def parse_engine_filter(text: str) -> dict[str, set[str]]:
    """``"vocals=choir,accompaniment=physical"`` -> ``{role: {engines}}`` (roles OR-ed)."""
    wanted: dict[str, set[str]] = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        role, sep, engine = item.partition("=")
        if not sep or role not in ROLES or not engine:
            raise ValueError(f"engine filter {item!r}: expected ROLE=ENGINE with ROLE one of "
                             f"{', '.join(ROLES)}, e.g. vocals=choir")
        wanted.setdefault(role, set()).add(engine)
    if not wanted:
        raise ValueError("engine filter: expected at least one ROLE=ENGINE")
    return wanted


def source_made_by(engines: Mapping[str, str | None], source: str,
                   wanted: Mapping[str, set[str]]) -> bool:
    """Whether an engine of ``wanted`` (:func:`parse_engine_filter`) made ``source`` of a
    clip whose engines are ``engines`` (its ``splits.json`` record): the vocals answer to
    the vocals and voice roles, the accompaniment and each of its stems to the accompaniment
    and recording roles, every source to the composer, and a sound font to the part a font
    engine plays."""
    part = "vocals" if source == "vocals" else "accompaniment"
    for role, names in wanted.items():
        if engines.get(role) not in names:
            continue
        made = ROLE_PARTS[role]
        if made in (part, "song") or (made == "font" and engines.get(part) in FONT_ENGINES):
            return True
    return False


def matches(engines: Mapping[str, str | None], wanted: Mapping[str, set[str]]) -> bool:
    """True when one of the clip's roles plays one of the wanted engines."""
    return any(engines.get(role) in names for role, names in wanted.items())


def recorded_corpora(folder: str | Path) -> dict | None:
    """The ``corpora`` record (train and valid corpus records) of a model folder's
    ``run.json`` (a training run) or ``training.json`` (a shipped model), or of a deploy
    bundle's manifest (its float model's record, copied by the export); None when the folder
    has none of them or the bundle's model recorded nothing."""
    folder = Path(folder)
    path = record_file(folder)
    if path is not None:
        record = read_json(path, "the record of a trained model")
        return _checked_corpora(record.get("corpora", {}), path)
    if (folder / MANIFEST_FILE).is_file():
        manifest = read_bundle(str(folder), verify_model=False).manifest
        provenance = manifest.get("provenance")
        corpora = provenance.get("corpora") if isinstance(provenance, dict) else None
        return None if corpora is None else _checked_corpora(corpora, folder / MANIFEST_FILE)
    return None


def _checked_corpora(corpora, path: Path) -> dict:
    """``corpora`` if it is an object of train and valid corpus records, each of whose
    ``engines`` maps roles to lists of engine names and whose ``earlier`` lists such records;
    else a ValueError naming ``path`` and the field."""
    if not isinstance(corpora, dict):
        raise ValueError(f"{path}: 'corpora' is not an object of train and valid corpus records")
    for split in ("train", "valid"):
        record = corpora.get(split) or {}
        _check_corpus_record(record, path, f"corpora.{split}")
        earlier = record.get("earlier") or []
        if not isinstance(earlier, list):
            raise ValueError(f"{path}: 'corpora.{split}.earlier' is not a list of corpus records")
        for index, corpus in enumerate(earlier):
            _check_corpus_record(corpus, path, f"corpora.{split}.earlier[{index}]")
    return corpora


def _check_corpus_record(record, path: Path, field: str) -> None:
    """A ValueError naming ``path`` and ``field`` unless ``record`` is an object whose
    ``engines`` (if any) maps role names to lists of engine names."""
    if not isinstance(record, dict):
        raise ValueError(f"{path}: '{field}' is not a corpus record (an object)")
    engines = record.get("engines") or {}
    if not isinstance(engines, dict) or not all(
            isinstance(names, list) and all(isinstance(n, str) for n in names)
            for names in engines.values()):
        raise ValueError(f"{path}: '{field}.engines' is not an object of roles, each a list of "
                         "engine names")


def model_engines(folder: str | Path) -> dict[str, dict[str, set[str]]]:
    """``{"train": {role: engines}, "valid": {role: engines}}`` recorded in a model folder
    (:func:`recorded_corpora`), the corpora a resumed run left behind included; empty roles
    when the folder records none."""
    corpora = recorded_corpora(folder) or {}
    return {split: _union_engines(corpora.get(split) or {}) for split in ("train", "valid")}


def _union_engines(record: Mapping) -> dict[str, set[str]]:
    """The engines per role of one split's corpus record and the corpora it replaced
    (``earlier``). Voices are left out when one of them has festival songs but names no
    voices: who sang there is not known. A corpus that names engines but no composer was
    written by the loops, the only composer then."""
    union: dict[str, set[str]] = {}
    voices_known = True
    for corpus in [record, *(record.get("earlier") or [])]:
        engines = (corpus.get("engines") if isinstance(corpus, dict) else None) or {}
        for role, names in engines.items():
            union.setdefault(role, set()).update(names)
        if engines and "composer" not in engines:
            union.setdefault("composer", set()).add(FIRST_COMPOSER)
        if "festival" in engines.get("vocals", ()) and not engines.get("voice"):
            voices_known = False
    if not voices_known:
        union.pop("voice", None)
    return union


def canonical_engine(role: str, engine: str) -> str:
    """A sound font or a collection of recordings named by its path: the name of the kit's
    font or collection at that path (``/usr/share/sounds/sf2/FluidR3_GM.sf2`` is fluidr3),
    else the resolved path; any other engine as written."""
    known = {"font": FONTS, "recording": COLLECTIONS}.get(role)
    if not known or engine in known or "/" not in engine:
        return engine
    resolved = Path(engine).expanduser().resolve()
    return next((name for name, (path, _) in known.items() if Path(path).resolve() == resolved),
                str(resolved))


def engine_status(role: str, engine: str, seen: Mapping[str, Mapping[str, set[str]]]) -> str:
    """trained, selection only (validation corpus) or held out, for one model; not recorded
    when the model's record says nothing, or (voices) names festival songs but not their
    voices, as corpora written before voices were recorded do."""
    if not any(seen.get(split) for split in ("train", "valid")):
        return UNKNOWN
    if role == "voice" and any("festival" in seen.get(split, {}).get("vocals", set())
                               and not seen.get(split, {}).get("voice")
                               for split in ("train", "valid")):
        return UNKNOWN
    engine = canonical_engine(role, engine)
    for split, status in (("train", TRAINED), ("valid", SELECTION)):
        if engine in {canonical_engine(role, e) for e in seen.get(split, {}).get(role, set())}:
            return status
    return HELD_OUT


def _mean_of(summary: Mapping, source: str, metric: str = "sdr") -> float | None:
    return summary.get("sources", {}).get(source, {}).get(metric, {}).get("mean")


def by_engine(report: Mapping, engines_of: Mapping[str, Mapping], model: str,
              seen: Mapping[str, Mapping[str, set[str]]] | None = None,
              roles: Sequence[str] = ROLES, status: str | None = None) -> list[dict]:
    """One row per (role, engine): the model's mean SDR per source, the best classic method
    per source on the same clips, the margin, the IRM oracle, the clip count and whether the
    model trained on the engine. The model's mean SIR and SAR tell a row that loses to
    interference (the other source leaking in) from one that loses to artefacts. Where a
    source was left out of the mixtures (``tinysep eval --silence``), its leak: the model's
    mean and the classic method that leaks least. ``roles`` may be any keys of
    ``engines_of``'s entries (a user's own tags, :mod:`tinysep.metrics.tags`), whose rows
    then carry ``status`` instead of what the model's record says. Each margin comes with
    its interval over the row's songs (:func:`tinysep.metrics.paired.paired_difference`)."""
    methods = list(report["methods"])
    done = [r for r in report["clips"] if "error" not in r]
    rows = []
    for role in roles:
        names = sorted({str(e[role]) for c in done if (e := engines_of.get(c["name"]))
                        and e.get(role)})
        for engine in names:
            clips = [c for c in done if (engines_of.get(c["name"]) or {}).get(role) == engine]
            summary = summarize_methods(clips, methods)
            row = {"role": role, "engine": engine, "clips": len(clips),
                   "status": engine_status(role, engine, seen or {}) if status is None
                   else status, "sources": {}}
            for source in SOURCES:
                classic = {m: _mean_of(summary[m], source) for m in methods
                           if m in CLASSIC_METHODS and _mean_of(summary[m], source) is not None}
                best = max(classic, key=classic.get) if classic else None
                scored = summary.get(model, {})
                value = _mean_of(scored, source)
                leaks = {m: leak for m in methods if m in CLASSIC_METHODS
                         and (leak := _mean_of(summary[m], source, "leak")) is not None}
                least = min(leaks, key=leaks.get) if leaks else None
                paired = (paired_difference(clips, model, best, source)
                          if best and value is not None else None)
                row["sources"][source] = {
                    "model": value,
                    "model_sir": _mean_of(scored, source, "sir"),
                    "model_sar": _mean_of(scored, source, "sar"),
                    "best_classic": best,
                    "best_classic_sdr": classic.get(best) if best else None,
                    "margin": (value - classic[best]) if best and value is not None else None,
                    "margin_low": paired["low"] if paired else None,
                    "margin_high": paired["high"] if paired else None,
                    "irm": _mean_of(summary[ORACLE], source) if ORACLE in summary else None,
                    "model_leak": _mean_of(scored, source, "leak"),
                    "least_classic_leak": least,
                    "least_classic_leak_db": leaks.get(least) if least else None,
                }
            rows.append(row)
    return rows


def format_engine_table(rows: Sequence[Mapping], title: str = "", what: str = "engine") -> str:
    """The per-engine rows as a fixed-width table (means in dB; v / a per cell): SDR of the
    model, the best classic method, the margin and its interval, the IRM, then the model's
    SIR and SAR, and, where a source was left out of the mixtures, the model's leak and the
    least classic leak."""

    def cells(a, b, form: str) -> str:  # a source left out of the mixtures has no SDR
        if a is None and b is None:
            return "    n/a      "
        return " / ".join("  -  " if x is None else format(x, form) for x in (a, b))

    def pair(a, b) -> str:
        return cells(a, b, "5.2f")

    def margin(a, b) -> str:
        return cells(a, b, "+5.2f")

    def interval(a, b) -> str:  # each source's margin interval
        def one(source):
            bounds = {"low": source.get("margin_low"), "high": source.get("margin_high")}
            return format_bounds(bounds, 1) or "  -  "
        return f"{one(a)} / {one(b)}"

    def classic_of(row) -> str:
        names = (row["sources"][v]["best_classic"], row["sources"][a]["best_classic"])
        return "/".join(sorted({name for name in names if name}))

    v, a = SOURCES
    leaks = any(row["sources"][s].get("model_leak") is not None
                or row["sources"][s].get("least_classic_leak_db") is not None
                for row in rows for s in SOURCES)
    # columns as wide as their longest entry (an engine may be a folder path)
    name_width = max([24, *(len(f"{r['role']}:{r['engine']}") for r in rows)]) + 2
    classic_width = max([15, *(len(classic_of(r)) for r in rows)]) + 1
    lines = [title] if title else []
    lines.append(f"{what:<{name_width}}{'status':<16}{'clips':>5}  {'model v / a':<14}"
                 f"{'best classic v / a':<{classic_width + 14}}{'margin v / a':<15}"
                 f"{f'margin {INTERVAL * 100:g} % v / a':<30}"
                 f"{'IRM v / a':<15}{'model SIR v / a':<16}{'model SAR v / a':<16}"
                 + (f"{'model leak v / a':<17}{'least classic leak v / a'}" if leaks else ""))
    for row in rows:
        sv, sa = row["sources"][v], row["sources"][a]
        lines.append((
            f"{row['role'] + ':' + row['engine']:<{name_width}}{row['status']:<16}"
            f"{row['clips']:>5}  {pair(sv['model'], sa['model']):<14}"
            f"{pair(sv['best_classic_sdr'], sa['best_classic_sdr'])} "
            f"{classic_of(row):<{classic_width}}"
            f"{margin(sv['margin'], sa['margin']):<15}{interval(sv, sa):<30}"
            f"{pair(sv['irm'], sa['irm']):<15}"
            f"{pair(sv.get('model_sir'), sa.get('model_sir')):<16}"
            f"{pair(sv.get('model_sar'), sa.get('model_sar')):<16}"
            + (f"{pair(sv.get('model_leak'), sa.get('model_leak')):<17}"
               f"{pair(sv.get('least_classic_leak_db'), sa.get('least_classic_leak_db'))}"
               if leaks else "")).rstrip())
    return "\n".join(lines)


def _row_labels(ax, x, labels: list[str], slant: bool) -> None:
    """One label under each row's bars; slanted, and anchored at their right end, when many
    long labels would overlap."""
    ax.set_xticks(x, labels, fontsize=7, rotation=30 if slant else 0,
                  ha="right" if slant else "center", rotation_mode="anchor")


def _plot_margins(ax, rows: Sequence[Mapping], source: str, x, labels: list[str],
                  slant: bool) -> None:
    """The model's margin over the best classic method per row, with its interval."""
    import numpy as np

    entries = [r["sources"][source] for r in rows]
    margin = np.array([np.nan if e["margin"] is None else e["margin"] for e in entries])
    low = np.array([np.nan if e.get("margin_low") is None else e["margin_low"] for e in entries])
    high = np.array([np.nan if e.get("margin_high") is None else e["margin_high"]
                     for e in entries])
    bounds = np.nan_to_num(np.stack([margin - low, high - margin]))
    ax.bar(x, margin, 0.5, color="tab:blue", yerr=bounds, capsize=3, ecolor="black")
    ax.axhline(0.0, color="black", linewidth=0.6)
    _row_labels(ax, x, labels, slant)
    ax.set_title(f"{source}: margin over the best classic method", fontsize=9)
    ax.set_ylabel(f"dB, {INTERVAL * 100:g} % interval over songs")
    ax.grid(axis="y", alpha=0.3)


def plot_engines(rows: Sequence[Mapping], path: str | Path, title: str = "") -> Path:
    """Grouped bars per engine: model, best classic and IRM SDR, vocals and accompaniment; a
    source left out of the mixtures shows the model's and the least classic leak instead.
    Below them, when the rows carry intervals, each row's margin with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    # an engine named by a folder (a collection of recordings) is labelled by its last part
    labels = [f"{r['role'][:5]}:{Path(r['engine']).name or r['engine']}"
              + (f"\n({r['status']})" if r["status"] else "") for r in rows]

    def is_left_out(source: str) -> bool:  # no SDR anywhere, a leak somewhere
        return all(r["sources"][source]["model"] is None for r in rows) and any(
            r["sources"][source].get("model_leak") is not None for r in rows)

    margins = any(r["sources"][s].get("margin_low") is not None for r in rows for s in SOURCES)
    levels = 2 if margins else 1
    stacked = len(rows) > WIDE_PLOT_ROWS
    slant = stacked and max(len(line) for label in labels
                            for line in label.split("\n")) > LABEL_SLANT_CHARS
    if stacked:  # many rows: one full-width panel under another
        fig, grid = plt.subplots(levels * len(SOURCES), 1, squeeze=False,
                                 figsize=(max(8.0, 0.6 * len(rows) + 2), 3.4 * levels
                                          * len(SOURCES)))
        grid = grid[:, 0].reshape(levels, len(SOURCES))
    else:
        fig, grid = plt.subplots(levels, len(SOURCES), squeeze=False,
                                 figsize=(max(6, 1.3 * len(rows)) * 1.6, 3.8 * levels + 0.4))
    axes = grid[0]
    if not any(is_left_out(s) for s in SOURCES):
        for ax in axes[1:]:
            ax.sharey(axes[0])
    x = np.arange(len(rows))
    series = (("model", "model", "tab:blue"), ("best classic", "best_classic_sdr", "tab:orange"),
              ("IRM (oracle)", "irm", "tab:gray"))
    leak_series = (("model", "model_leak", "tab:blue"),
                   ("least classic", "least_classic_leak_db", "tab:orange"))
    for ax, source in zip(np.atleast_1d(axes), SOURCES, strict=True):
        left_out = is_left_out(source)  # no SDR: its leak is drawn instead
        for k, (label, key, color) in enumerate(leak_series if left_out else series):
            values = [r["sources"][source].get(key) for r in rows]
            if all(v is None for v in values):  # a method not run: no bars, no legend entry
                continue
            ax.bar(x + (k - 1) * 0.27, [np.nan if v is None else v for v in values], 0.27,
                   label=label, color=color)
        ax.axhline(0.0, color="black", linewidth=0.6)
        _row_labels(ax, x, labels, slant)
        ax.set_title(f"{source} left out: leak" if left_out else source)
        ax.set_ylabel("leak mean (dB, lower is better)" if left_out else "SDR mean (dB)")
        ax.grid(axis="y", alpha=0.3)
    labelled = [ax for ax in np.atleast_1d(axes) if ax.get_legend_handles_labels()[0]]
    if labelled:  # the first panel with bars (a panel may have none: nothing scored there)
        labelled[0].legend(fontsize=8)
    if margins:
        for ax, source in zip(grid[1], SOURCES, strict=True):
            _plot_margins(ax, rows, source, x, labels, slant)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

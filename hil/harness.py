"""The hardware-in-the-loop run: every clip through the board, scored against float and int8 on
the host, with a report that is rewritten after every clip.

Per clip: the mixture is rounded to int16 (what the board gets; the host references get the
same samples), streamed through the board, run through the same streaming pipeline on the host
(bit-exact reference), through the host int8 runner and the float Keras model, and scored with
BSS-eval. Clips given as mixture files without references (see ``tinysep.eval_inputs``) are
streamed and compared with the host int8 output (LSB) and the float output (SNR), but get no
SDR: ``n/a (no reference)``. With ``save_audio`` every clip's mixture, references and the three
outputs are kept as wav files, in the layout ``tinysep eval --save-audio`` writes. Before the
clips, a tensor-mode check compares the board's raw int8 outputs with the
host interpreter's for real model inputs (states included), when the board lists tensor mode
and one request fits its max message; otherwise the check is reported as skipped, with why.

Before anything runs, the float model is checked against the bundle: the sha256 of its
architecture and weights must be the one the bundle records as its source (``provenance``),
and the manifest's audio fields must be the float model's STFT. Each clip's original sample
rate and sample width are reported, and clips that are silent are reported as such.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from firmware_host.board.pipeline import PCM_SCALE, to_pcm
from firmware_host.bundle import Bundle, read_bundle
from firmware_host.protocol.errors import LinkError, PeerError, ProtocolError
from firmware_host.protocol.messages import CAP_TENSOR, Tensor, TensorIn, TensorOut
from tinysep.eval_inputs import FILES, input_sources
from tinysep.progress import Progress
from tinysep.quiet import quiet_runtime

from .reference import HostPipeline, exactness_expected, float_runner
from .report import FIGURES_DIR, report_sources, write_reports
from .session import DEFAULT_CHUNK_HOPS, BoardSession, HilError, UploadRefused, reply_parts

# where each output goes under --save-audio DIR/CLIP/ (beside mixture.wav and reference/)
AUDIO_FOLDERS = {"float": "float", "int8_host": "int8-host", "int8_board": "board"}

# LinkError, PeerError, MessageError included; a board that cannot take the bundle's model
# (UploadRefused with --flash) cannot be tested either
BOARD_FAULTS = (HilError, UploadRefused, ProtocolError, OSError)


class InputRefused(HilError):
    """The inputs do not belong together (float model vs bundle): nothing was run."""


@dataclass
class HilSettings:
    """What to test and the pass/fail limits."""

    bundle: str
    float_model: str
    data: str
    report_dir: str
    dataset: str = "auto"  # auto, mir1k, musdb, synth, or FILES
    split: str | None = "test"  # None for mixture files
    max_clips: int | None = None
    max_sdr_drop: float = 0.5
    max_sdr_gain: float = 0.5  # a board this much better than float is not the same model
    max_lsb: int | None = None  # board vs host int8: None = 0 where exactness is expected, -1 off
    min_realtime: float | None = None
    chunk_hops: int = DEFAULT_CHUNK_HOPS
    plots: int = 3
    tensor_invokes: int = 8
    progress: bool = True
    flash: bool = False
    allow_float_mismatch: bool = False  # compare with a float model that is not the source
    save_audio: str | None = None  # folder for every clip's mixture, references and outputs


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _lsb(board: np.ndarray, host: np.ndarray, sources: list) -> dict:
    diff = np.abs(board.astype(np.int32) - host.astype(np.int32))
    return {
        name: {
            "max_abs": int(diff[i].max()) if diff[i].size else 0,
            "mean_abs": float(diff[i].mean()) if diff[i].size else 0.0,
            "differing": int(np.count_nonzero(diff[i])),
            "samples": int(diff[i].size),
        }
        for i, name in enumerate(sources)
    }


def _vs_float(estimates: dict, float_estimates: dict, names: list) -> dict:
    """SNR (dB) of each source of ``estimates`` against the float output: how close an int8
    output is to its float model, with or without references."""
    from tinysep.metrics.bss import limited_db

    result = {}
    for name in names:
        ref = np.asarray(float_estimates[name], dtype=np.float64)
        est = np.asarray(estimates[name], dtype=np.float64)
        result[name] = limited_db(float(np.sum(ref * ref)), float(np.sum((est - ref) ** 2)))
    return result


def _unscored(names: list, reason: str) -> dict:
    from tinysep.metrics.scores import VALUE_KEYS

    return {name: dict({key: None for key in VALUE_KEYS}, skipped=reason) for name in names}


def _as_estimates(pcm_sources: np.ndarray, names: list) -> dict:
    return {name: pcm_sources[i].astype(np.float32) / PCM_SCALE for i, name in enumerate(names)}


def _tensor_skipped(reason: str) -> dict:
    return {"skipped": True, "reason": reason, "invokes": 0, "max_abs_diff": None,
            "differing_values": 0, "values": 0, "invoke_us_median": None}


def tensor_check(session: BoardSession, host: HostPipeline, pcm: np.ndarray, invokes: int) -> dict:
    """Raw int8 outputs of the board vs the host interpreter for the same real model inputs.

    Skipped (with the reason) when the board's INFO does not list tensor mode or one
    TENSOR_IN or TENSOR_OUT would not fit the board's max message (every model input travels
    in one message); a board that refuses the request fails the check.
    """
    limits = session.limits
    if limits is not None and not limits.has(CAP_TENSOR):
        return _tensor_skipped(
            "the board's INFO does not list tensor mode (capabilities: "
            + (", ".join(limits.capability_names()) or "none") + ")"
        )
    records = host.tensor_check_inputs(pcm, invokes)
    if records and limits is not None:
        request = len(TensorIn([Tensor(i, a) for i, a in enumerate(records[0])]).encode())
        outputs = host.run_tensors(records[0])
        reply = len(TensorOut([Tensor(i, a) for i, a in enumerate(outputs)]).encode())
        if max(request, reply) > limits.max_message:
            return _tensor_skipped(
                f"one TENSOR_IN of this model is {request} bytes and its TENSOR_OUT {reply}; "
                f"the board holds messages of at most {limits.max_message} bytes"
            )
    worst = 0
    differing = 0
    values = 0
    invoke_us = []
    for number, inputs in enumerate(records):
        expected = host.run_tensors(inputs)
        tensors = [Tensor(i, a) for i, a in enumerate(inputs)]
        try:
            reply = session.recovering(
                "the tensor check", lambda tensors=tensors: session.client.run_tensors(tensors)
            )
        except PeerError as exc:
            return dict(_tensor_skipped(""), skipped=False, reason="",
                        error=f"invoke {number}: {exc}", invokes=number)
        got = dict((t.index, t.array) for t in reply.tensors)
        if sorted(got) != list(range(len(expected))):
            raise ProtocolError(
                f"TENSOR_OUT carries outputs {sorted(got)}, the model has {len(expected)}"
            )
        for index, want in enumerate(expected):
            if got[index].shape != want.shape or got[index].dtype != want.dtype:
                raise ProtocolError(
                    f"TENSOR_OUT output {index} is {got[index].dtype} {got[index].shape}, "
                    f"expected {want.dtype} {want.shape}"
                )
            diff = np.abs(got[index].astype(np.int64) - want.astype(np.int64))
            worst = max(worst, int(diff.max()) if diff.size else 0)
            differing += int(np.count_nonzero(diff))
            values += int(diff.size)
        invoke_us.append(reply.invoke_us)
    return {
        "skipped": False,
        "invokes": len(records),
        "max_abs_diff": worst,
        "differing_values": differing,
        "values": values,
        "invoke_us_median": float(np.median(invoke_us)) if invoke_us else None,
    }


def check_float_model(bundle, model, allow_mismatch: bool) -> dict:
    """The float model against the bundle: provenance hashes and the audio fields.

    Raises InputRefused naming the field or hash that differs; with ``allow_mismatch`` a
    hash mismatch is recorded (``overridden``) instead. Returns the provenance record.
    """
    from convert.manifest import float_model_digest
    from tinysep.dsp import SAMPLE_RATE
    from tinysep.models import model_config
    from tinysep.models.registry import model_framing

    manifest = json.loads(bundle.manifest_text)
    audio = manifest.get("audio", {})
    config = model_config(model)
    framing = model_framing(config)
    wanted = {
        "sample_rate": config.get("sample_rate", SAMPLE_RATE),
        "n_fft": config.get("n_fft", framing.n_fft),
        "hop_samples": config.get("hop_samples", framing.hop),
        "analysis_window": framing.analysis_window,
        "synthesis_window": framing.synthesis_window,
    }
    for field, value in wanted.items():
        if audio.get(field) != value:
            raise InputRefused(
                f"{bundle.manifest_path}: audio.{field} is {audio.get(field)!r}, the float "
                f"model works at {field} = {value}; the manifest was edited or belongs to "
                "another model"
            )
    digest = float_model_digest(model)
    recorded = (manifest.get("provenance") or {}).get("float_model")
    record = {
        "float_model": digest,
        "recorded": recorded,
        "calibration": (manifest.get("provenance") or {}).get("calibration"),
        "overridden": False,
    }
    if not isinstance(recorded, dict) or "sha256" not in recorded:
        record["match"] = None
        record["note"] = ("the bundle records no float model (exported before provenance "
                          "was recorded): the comparison is not verified")
        return record
    record["match"] = recorded.get("sha256") == digest["sha256"]
    if record["match"]:
        return record
    parts = [
        what for what, key in (("architecture", "config_sha256"), ("weights", "weights_sha256"))
        if recorded.get(key) != digest[key]
    ]
    text = (
        f"the float model is not the one {bundle.folder} was exported from: its "
        f"{' and '.join(parts) or 'hash'} differ (float sha256 {digest['sha256'][:16]}..., the "
        f"bundle records {str(recorded.get('sha256'))[:16]}...)"
    )
    if not allow_mismatch:
        raise InputRefused(text + "; pass --allow-float-mismatch to compare anyway")
    record["overridden"] = True
    record["note"] = "OVERRIDDEN (--allow-float-mismatch): " + text
    return record


def clip_input(source) -> dict:
    """The clip's files as stored: sample rate, sample format, channels, and whether the
    harness converted them (resampled to the bundle's rate or from another sample width)."""
    import soundfile

    files = []
    for path in source.paths:
        if str(path).lower().endswith(".npy"):
            files.append(_npy_input(path))
            continue
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, OSError, ValueError) as exc:
            files.append({"path": str(path), "error": str(exc)})
            continue
        files.append({
            "path": str(path),
            "sample_rate": int(info.samplerate),
            "subtype": str(info.subtype),
            "channels": int(info.channels),
        })
    return {"files": files}


def _npy_input(path) -> dict:
    """A ``.npy`` input as stored: 16 kHz mono by definition, its array's dtype."""
    from tinysep.dsp import SAMPLE_RATE

    try:
        array = np.load(str(path), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return {"path": str(path), "error": str(exc)}
    return {"path": str(path), "sample_rate": SAMPLE_RATE, "subtype": f"npy {array.dtype}",
            "channels": 1}


def hil_sources(settings: HilSettings, names) -> list:
    """The clips to stream: one split of a dataset folder, or mixture files (``FILES``), at
    most ``max_clips``; ValueError when there are none."""
    from tinysep.data.loaders import find_clips

    if settings.dataset == FILES:
        sources = input_sources(settings.data)
    else:
        sources = find_clips(settings.data, dataset=settings.dataset,
                             split=settings.split or "test", sources=tuple(names))
    if settings.max_clips is not None:
        sources = sources[: settings.max_clips]
    if not sources:
        raise ValueError(f"no clips in split {settings.split!r} under {settings.data}")
    return sources


class _Progress:
    """The kit's progress over clips (a bar on a terminal, plain lines in a log), advancing
    with every returned chunk."""

    def __init__(self, total: int, enabled: bool, stream=None) -> None:
        self.bar = Progress(total, "hil", "clips", enabled=enabled, stream=stream)
        self.done = 0.0
        self.position = 0.0

    def clip(self, samples: int):
        """Callback for one clip's chunks (fraction of the clip returned so far)."""
        self.position = self.done

        def update(returned: int) -> None:
            self.position = self.done + min(1.0, returned / max(1, samples))
            self.bar.update_to(self.position)

        return update

    def finish_clip(self, postfix: str = "") -> None:
        self.done += 1.0
        if postfix:
            self.bar.postfix(postfix)
        self.bar.update_to(self.done)
        self.position = self.done

    def close(self) -> None:
        self.bar.close()


def new_report(settings: HilSettings, bundle, board_meta: dict, clips_planned: int) -> dict:
    return {
        "command": "hil",
        "status": "running",
        "error": None,
        "started": _now(),
        "finished": None,
        "board": dict(board_meta),
        "bundle": {
            "path": str(settings.bundle),
            "sha256": bundle.model_sha256,
            "frames_per_invoke": bundle.frames_per_invoke,
            "delay_samples": bundle.delay_samples,
            "sources": list(bundle.sources),
        },
        "float_model": str(settings.float_model),
        "data": {"path": str(settings.data), "dataset": settings.dataset, "split": settings.split,
                 "save_audio": settings.save_audio},
        "settings": dict(
            asdict(settings),
            chunk_samples=settings.chunk_hops * bundle.hop,
        ),
        "clips_planned": clips_planned,
        "fault": None,
        "provenance": None,
        "session": None,
        "tensor_check": None,
        "clips": [],
        "plots": [],
    }


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def run_clip(
    source, session, host, float_run, settings, progress, names, chunk_hops=None
) -> tuple:
    """Stream, reference and score one clip (and keep its audio with ``save_audio``);
    returns (record, audio for plots). A clip without references for the bundle's sources
    is streamed and compared with the host outputs, but not scored."""
    from tinysep.metrics import score_estimates, score_mixture

    chunk_hops = chunk_hops or settings.chunk_hops
    clip = source.load(host.bundle.sample_rate)
    stored = clip_input(source)
    rates = sorted({f["sample_rate"] for f in stored["files"] if "sample_rate" in f})
    subtypes = sorted({f["subtype"] for f in stored["files"] if "subtype" in f})
    conversions = []
    if any(rate != clip.sample_rate for rate in rates):
        conversions.append(f"resampled {'/'.join(map(str, rates))} Hz -> {clip.sample_rate} Hz")
    if any(sub != "PCM_16" for sub in subtypes):
        conversions.append(f"{'/'.join(subtypes)} -> PCM_16")
    stored["converted"] = conversions
    pcm = to_pcm(clip.mixture)
    mixture = pcm.astype(np.float32) / PCM_SCALE
    chunk = chunk_hops * host.bundle.hop
    streamed = session.stream_clip(pcm, chunk_hops, progress.clip(pcm.size))
    host_pcm = host.stream(pcm, chunk)
    estimates = {
        "float": float_run(mixture),
        "int8_host": _as_estimates(host_pcm, names),
        "int8_board": _as_estimates(streamed.sources, names),
    }
    reason = None
    if not getattr(clip, "has_references", True):
        from tinysep.evaluate import NO_REFERENCE

        reason = NO_REFERENCE
    else:
        try:
            references = {name: clip.source(name) for name in names}
        except KeyError:
            reason = (f"no reference for {', '.join(n for n in names if n not in clip.sources)}"
                      f" (the clip has {', '.join(clip.sources)})")
    if reason is None:
        mixture_scores = score_mixture(references, clip.mixture)
        scores = {
            variant: score_estimates(references, estimate, mixture_scores)
            for variant, estimate in estimates.items()
        }
    else:
        mixture_scores = _unscored(names, reason)
        scores = {variant: _unscored(names, reason) for variant in estimates}

    def drop(variant: str, name: str):
        a = scores["float"][name]["sdr"]
        b = scores[variant][name]["sdr"]
        return None if a is None or b is None else a - b

    invoke = np.asarray(streamed.invoke_us, dtype=np.float64)
    silent = not np.any(pcm)
    record = {
        "name": clip.name,
        "song": clip.song_id,  # clips of one song are not independent: intervals resample songs
        "status": "ok",
        "input": stored,
        "silent": bool(silent),
        "references": reason is None,
        "not_scored": reason,
        "samples": int(pcm.size),
        "seconds": float(pcm.size / clip.sample_rate),
        "mixture": mixture_scores,
        "scores": scores,
        "drop": {v: {n: drop(v, n) for n in names} for v in ("int8_host", "int8_board")},
        "lsb": _lsb(streamed.sources, host_pcm, names),
        "vs_float_snr": {v: _vs_float(estimates[v], estimates["float"], names)
                         for v in ("int8_host", "int8_board")},
        "stream": {
            "chunks": streamed.chunks,
            "invokes": streamed.invokes,
            "wall_seconds": streamed.wall_seconds,
            "realtime_factor": (pcm.size / clip.sample_rate) / streamed.wall_seconds,
            "invoke_us_p50": float(np.percentile(invoke, 50)) if invoke.size else None,
            "invoke_us_p99": float(np.percentile(invoke, 99)) if invoke.size else None,
            "invoke_us_per_chunk": [round(float(v), 1) for v in invoke],
            "link": streamed.link,
            "recoveries": streamed.recoveries,
            "resumed_from": streamed.resumed_from,
            "warmup_chunks": streamed.warmup_chunks,
            "positions_ok": True,
        },
    }
    audio = {
        "mixture": mixture,
        "float": estimates["float"],
        "board": estimates["int8_board"],
        "sample_rate": clip.sample_rate,
    }
    if settings.save_audio is not None:
        try:
            record["audio_folder"] = str(save_audio(settings.save_audio, clip, mixture,
                                                    estimates))
        except (OSError, ValueError) as exc:  # the disk, not the board: keep going
            record["audio_error"] = f"{type(exc).__name__}: {exc}"
    return record, audio


def save_audio(folder, clip, mixture: np.ndarray, estimates: dict) -> Path:
    """Write ``FOLDER/<clip>/mixture.wav`` (the int16 samples the board got),
    ``reference/<source>.wav`` when the clip has references, and ``float/``, ``int8-host/``
    and ``board/<source>.wav``: the layout of ``tinysep eval --save-audio``."""
    from tinysep.evaluate import save_clip_audio

    streamed = dataclasses.replace(clip, mixture=mixture)
    return save_clip_audio(folder, streamed, {AUDIO_FOLDERS[variant]: sources
                                              for variant, sources in estimates.items()})


def _sync_session(report: dict, session: BoardSession) -> None:
    """Whole-session link counters and recoveries (INFO, tensor check, upload, clips)."""
    report["session"] = {
        "link": session.counters(),
        "recoveries": list(session.recoveries),
        "budget": asdict(session.budget),
    }
    if session.limits is not None:
        report["board"]["limits"] = session.limits.as_dict()


def run_hil(session: BoardSession, settings: HilSettings, board_meta: dict,
            bundle: Bundle | None = None, sources: list | None = None) -> dict:
    """Run the whole test on a board session; returns the report (also written to disk).

    The report's ``status`` ends as ``finished``, ``refused`` (the inputs do not belong
    together; nothing ran), ``aborted`` (``fault``: ``board`` for a board or link that
    failed, ``host`` for an error of the harness) or, after Ctrl-C, ``aborted``.
    ``sources``: the clips when the caller has listed them already (:func:`hil_sources`).
    """
    from tinysep.models import load_model

    bundle = bundle if bundle is not None else read_bundle(settings.bundle)
    if sources is None:
        sources = hil_sources(settings, bundle.sources)
    names = list(bundle.sources)
    report_dir = Path(settings.report_dir)
    report = new_report(settings, bundle, board_meta, len(sources))
    write_reports(report, report_dir)
    progress = None
    plotted = []
    try:
        model = load_model(settings.float_model)
        report["provenance"] = check_float_model(bundle, model, settings.allow_float_mismatch)
        float_run = float_runner(model)
        report["int8_host_runner"] = "convert.runtime"  # the agent's pipeline on the host
        progress = _Progress(len(sources), settings.progress)
        info = session.connect()
        report["board"].update(
            agent=info.agent_version,
            runtime=info.runtime,
            delegate=info.delegate,
            model_sha256=info.model_sha256.hex(),
        )
        _sync_session(report, session)
        if settings.flash and info.model_sha256.hex() != bundle.model_sha256:
            session.refuse_unfit_upload(bundle)
            with open(bundle.model_path, "rb") as handle:
                session.upload(handle.read())
            report["board"]["flashed"] = True
            report["board"]["model_sha256"] = session.info.model_sha256.hex()
        session.check(bundle)
        chunk_hops = session.chunk_hops(settings.chunk_hops, bundle)
        report["settings"]["chunk_hops_used"] = chunk_hops
        report["settings"]["chunk_samples"] = chunk_hops * bundle.hop
        if chunk_hops != settings.chunk_hops:
            report["settings"]["chunk_note"] = (
                f"{settings.chunk_hops} hops per chunk asked, {chunk_hops} fit the board's "
                f"max message of {session.limits.max_message} bytes"
            )
        parts = reply_parts(chunk_hops * bundle.hop, len(bundle.sources),
                            session.limits.max_message if session.limits else None)
        report["settings"]["reply_parts"] = parts
        if parts > 1:
            report["settings"]["chunk_note"] = (
                report["settings"].get("chunk_note", f"{chunk_hops} hops per chunk")
                + f"; each SEPARATED_CHUNK comes back in {parts} parts"
            )
        kernels = "reference" if info.delegate == "cpu-reference" else "default"
        with quiet_runtime():  # without the runtime's "Created ... delegate" line
            host = HostPipeline(bundle, kernels=kernels)
        exact, why = exactness_expected(info.runtime, info.delegate, host,
                                        board_meta.get("arch"))
        report["board"].update(
            host_runtime=host.runtime.label,
            host_kernels=kernels,
            exact_expected=exact,
            exact_reason=why,
        )
        try:
            first = to_pcm(sources[0].load(bundle.sample_rate).mixture)
        except (OSError, ValueError) as exc:
            raise InputRefused(f"{sources[0].name}: cannot read the clip ({exc})") from exc
        report["tensor_check"] = tensor_check(session, host, first, settings.tensor_invokes)
        _sync_session(report, session)
        write_reports(report, report_dir)
        for number, source in enumerate(sources):
            try:
                record, audio = run_clip(
                    source, session, host, float_run, settings, progress, names,
                    chunk_hops,
                )
            except (HilError, LinkError, OSError):
                report["clips"].append(
                    {"name": source.name, "status": "error", "error": "run stopped here"}
                )
                raise
            except (PeerError, ProtocolError, ValueError, RuntimeError) as exc:
                record = {
                    "name": source.name,
                    "status": "error",
                    "error": f"{type(exc).__name__}: {exc}",
                }
                audio = None
            report["clips"].append(record)
            if audio is not None and len(plotted) < settings.plots:
                path = report_dir / FIGURES_DIR / f"clip_{number:03d}_{_safe_name(source.name)}.png"
                _plot_clip(record["name"], audio, names, path)
                plotted.append(str(path.relative_to(report_dir)))
                report["plots"] = plotted + ["figures/sdr_bars.png"]
            drop = record.get("drop", {}).get("int8_board", {})
            progress.finish_clip(
                " ".join(f"{n[:3]} {v:+.2f}" for n, v in drop.items() if v is not None)
            )
            _sync_session(report, session)
            write_reports(report, report_dir)
        report["status"] = "finished"
    except KeyboardInterrupt:
        report["status"] = "aborted"
        report["error"] = "interrupted (Ctrl-C)"
        raise
    except InputRefused as exc:
        report["status"] = "refused"
        report["fault"] = "input"
        report["error"] = str(exc)
    except BOARD_FAULTS as exc:
        report["status"] = "aborted"
        report["fault"] = "board"
        report["error"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a harness bug must still end the report, never "running"
        report["status"] = "aborted"
        report["fault"] = "host"
        report["error"] = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if progress is not None:
            progress.close()
        report["finished"] = _now()
        _sync_session(report, session)
        from .plots import plot_sdr_bars

        bars = plot_sdr_bars(report["clips"], report_dir / FIGURES_DIR / "sdr_bars.png",
                             report_sources(report))
        report["plots"] = plotted + (["figures/sdr_bars.png"] if bars else [])
        report["report_files"] = {k: str(v) for k, v in write_reports(report, report_dir).items()}
    return report


def _plot_clip(name: str, audio: dict, names: list, path: Path) -> None:
    from .plots import plot_clip

    rows = {}
    for source in names:
        rows[f"{source} float"] = audio["float"][source]
        rows[f"{source} board"] = audio["board"][source]
    plot_clip(name, audio["mixture"], rows, audio["sample_rate"], path)

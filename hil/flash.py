"""Upload a bundle's model to a running board agent (``tinysep flash``).

The agent writes the upload beside its model, checks size and sha256, loads and checks the new
model against its manifest, and only then swaps it in; afterwards INFO must report the bundle's
sha256. A board that already runs the model is left alone unless ``force``. Before uploading,
the board's manifest is compared with the bundle's: an upload rewrites only the model's hash,
size, scales and zero points, so a board whose bundle differs in anything else (audio, sources,
tensor layout, input transform) is refused here rather than by ``tinysep hil`` afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from convert.sizes import KIB
from firmware_host.bundle import read_bundle
from tinysep.progress import Progress

from .session import BoardSession, HilError


@dataclass
class FlashResult:
    """What the flash did."""

    previous_sha256: str
    sha256: str
    bytes: int
    uploaded: bool
    seconds: float


def flash_bundle(
    session: BoardSession, bundle_dir: str, force: bool = False, progress: bool = True,
    stream=None,
) -> FlashResult:
    """Connect, upload the bundle's model if the board runs another one, verify INFO after.

    With ``progress`` the upload is reported in KiB through the kit's
    :class:`~tinysep.progress.Progress` on ``stream`` (stderr by default)."""
    import time

    bundle = read_bundle(bundle_dir)
    with open(bundle.model_path, "rb") as handle:
        data = handle.read()
    info = session.connect()
    previous = info.model_sha256.hex() if info.has_model else ""
    session.refuse_unfit_upload(bundle)
    if previous == bundle.model_sha256 and not force:
        return FlashResult(previous, previous, len(data), False, 0.0)
    bar = Progress(len(data) / KIB, "flash", "KiB", enabled=progress, stream=stream)
    start = time.perf_counter()
    with bar:
        session.upload(data, progress=lambda sent: bar.update_to(sent / KIB))
    seconds = time.perf_counter() - start
    now = session.info.model_sha256.hex()
    if now != bundle.model_sha256:
        raise HilError(
            f"after the upload the board reports model sha256 {now}, expected {bundle.model_sha256}"
        )
    return FlashResult(previous, now, len(data), True, seconds)

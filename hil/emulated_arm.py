"""Emulated ARM boards: the unchanged board agent on Debian's ARM Python, numpy and the ARM
build of a TFLite runtime, run by qemu-user on this x86-64 host.

``arm64``: Debian bookworm arm64 (Python 3.11, numpy 1.24) with the aarch64 ``ai-edge-litert``
wheel (Raspberry Pi 4/5, Coral Dev Board class). ``armhf``: Debian bullseye armhf (Python 3.9,
numpy 1.19) with the armv7l ``tflite-runtime`` wheel (32-bit Raspberry Pi OS class): no
``ai-edge-litert`` wheel exists for 32-bit ARM, and the last ``tflite-runtime`` for it that
imports with numpy 1.19 is 2.11 (2.13 needs numpy's newer C API).

The root is a folder of Debian packages unpacked with ``mmdebstrap --variant=extract`` (no
maintainer script, so no foreign code runs while building it) plus the runtime's ARM wheel
unpacked into its ``/usr/local/lib/python3.X/dist-packages``. ``qemu-aarch64-static -L ROOT``
runs the root's Python without binfmt: ``-L`` makes the guest's dynamic loader find the
root's libraries. Debian keeps its reference BLAS/LAPACK (numpy's) in subfolders that its
alternatives would link, which the extract variant never sets up, so ``LD_LIBRARY_PATH``
names them (as paths inside the root). Bytecode goes to a cache folder inside the root
(``PYTHONPYCACHEPREFIX``), filled once at the end of the build: compiling numpy under qemu at
every start would take seconds.

``python -m hil.emulated_arm build --arch arm64 --wheel ai-edge-litert==V`` builds
the root once (``make board-arm64``); ``agent_launcher`` gives the command and environment
that ``hil.emulator.EmulatedBoard`` runs the agent with.

Correctness, not speed: qemu translates every instruction, so an invoke takes tens of
milliseconds where real boards take a few; times measured here are labelled emulated.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from firmware_host.bundle.layout import MODEL_FILE

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = REPO_ROOT / "build"
ROOT_ENV = "TINYSEP_{arch}_ROOT"  # e.g. TINYSEP_ARM64_ROOT=/path/to/root overrides build/
STAMP_NAME = ".tinysep-board-root.json"
DEBIAN_MIRROR = "http://deb.debian.org/debian"  # always given: without one, mmdebstrap
# reads its sources from standard input when that is not a terminal
DEBIAN_PACKAGES = ("python3", "python3-numpy", "libstdc++6")
GUEST_PYTHON = "/usr/bin/python3"
PYCACHE = "var/cache/tinysep-pycache"  # inside the root


@dataclass(frozen=True)
class ArmArch:
    """One emulated ARM board kind: Debian's name for it, its qemu-user binary and the tags of
    its runtime wheel."""

    name: str  # what --arch takes
    debian_arch: str
    suite: str  # Debian release
    glibc_minor: int  # the suite's glibc 2.N: the newest manylinux tag the root can load
    qemu: str
    triplet: str  # Debian's multiarch library folder
    wheel_machine: str  # the machine part of a manylinux wheel tag
    make_target: str

    def wheel_platforms(self) -> list:
        """Every wheel platform tag the root can load (pip matches each tag by name)."""
        tags = [f"manylinux_2_{minor}_{self.wheel_machine}"
                for minor in range(17, self.glibc_minor + 1)]
        return tags + [f"manylinux2014_{self.wheel_machine}", f"linux_{self.wheel_machine}"]


ARCHES = {
    "arm64": ArmArch(
        name="arm64",
        debian_arch="arm64",
        suite="bookworm",
        glibc_minor=36,
        qemu="qemu-aarch64-static",
        triplet="aarch64-linux-gnu",
        wheel_machine="aarch64",
        make_target="board-arm64",
    ),
    "armhf": ArmArch(
        name="armhf",
        debian_arch="armhf",
        suite="bullseye",
        glibc_minor=31,
        qemu="qemu-arm-static",
        triplet="arm-linux-gnueabihf",
        wheel_machine="armv7l",
        make_target="board-armhf",
    ),
}
BOARD_ARCHES = ("host",) + tuple(ARCHES)  # what --arch / --board-arch accept


# Board vs host int8, measured with `tinysep hil --emulate --board-arch ARCH --board-kernels K`
# (the shipped bundle, 4 clips of 10 s, 1,280,000 samples; and the test bundles, 2 clips):
# (arch, board runtime, host runtime, kernels) -> (largest difference of raw int8 outputs in
# the tensor check, largest difference of the 16-bit audio), both in LSB. Pairs not listed
# are reported without a limit.
MEASURED_LSB = {
    ("arm64", "ai_edge_litert 1.4.0", "ai_edge_litert 2.3.0", "default"): (0, 0),
    ("arm64", "ai_edge_litert 1.4.0", "ai_edge_litert 2.3.0", "reference"): (0, 0),
    # 32-bit ARM kernels round otherwise (SDR board - host within 0.02 dB all the same)
    ("armhf", "tflite_runtime 2.11.0", "ai_edge_litert 2.3.0", "default"): (36, 651),
    ("armhf", "tflite_runtime 2.11.0", "ai_edge_litert 2.3.0", "reference"): (24, 619),
}


def measured_exactness(arch: str | None, board_runtime: str, board_delegate: str,
                       host_runtime: str) -> tuple | None:
    """(bool, why): is a CPU board of ``arch`` bit-exact with this host, as measured?

    None for the host's own architecture or a delegate (the general rules apply). An ARM
    board is expected bit-exact only where a pair of runtimes measured so: the same version on
    two CPUs does not promise it (their optimized kernels are different code).
    """
    if arch in (None, "host") or board_delegate not in ("cpu", "cpu-reference"):
        return None
    kernels = "reference" if board_delegate == "cpu-reference" else "default"
    where = (f"{board_runtime} on the emulated {arch} board, {host_runtime} on this host "
             f"({kernels} kernels)")
    measured = MEASURED_LSB.get((arch, board_runtime, host_runtime, kernels))
    if measured == (0, 0):
        return True, f"measured bit-exact: {where}"
    if measured is not None:
        return False, (
            f"{where}: measured up to {measured[0]} LSB on raw int8 outputs and "
            f"{measured[1]} LSB on the audio (their kernels round differently), so the "
            "difference is reported and the SDR checks decide"
        )
    return False, (
        f"{where}: this pair was not measured (kernels of two CPUs may round differently), "
        "so the difference is reported and the SDR checks decide"
    )


def board_launch(arch: str, python: str | None = None, profile: str | None = None) -> dict:
    """Keyword arguments for ``EmulatedBoard`` that run the agent on an emulated ``arch``
    board ({} for the host). ArmRootMissing / ValueError say what is wrong."""
    if arch == "host":
        return {}
    arch_spec(arch)
    if python:
        raise ValueError(f"--board-python and an emulated {arch} board exclude each other: "
                         "the board runs its root's own Python")
    if profile not in (None, "host"):
        raise ValueError(f"the {profile} profile runs on the host's CPU; an emulated {arch} "
                         "board runs as a Linux board")
    interpreter, env = agent_launcher(arch)
    return {"interpreter": interpreter, "env": env}


def serve_emulated(arch: str, bundle: str | Path, baud: int | None = None,
                   runtime: str = "auto", announce=None, should_stop=None,
                   log_path: str | Path | None = None) -> int:
    """Run the agent on an emulated ``arch`` board on a new pseudo-terminal until
    ``should_stop()`` or the agent exits (``tinysep board --emulate --arch``).

    ``announce(path)`` gets the device path the harness should open. Returns 0 when stopped,
    else raises ArmRootMissing with the agent's last log lines.
    """
    from hil.emulator import EmulatedBoard

    launch = board_launch(arch)
    extra = [] if runtime == "auto" else ["--runtime", runtime]
    own_log = log_path is None  # a log of its own goes unless the agent failed
    if own_log:
        log_path = Path(tempfile.mkdtemp(prefix=f"tinysep-{arch}-board-")) / "agent.log"
    with EmulatedBoard(bundle, baud=baud, extra_args=extra, log_path=log_path,
                       **launch) as board:
        if announce is not None:
            announce(board.path)
        while board.running and not (should_stop is not None and should_stop()):
            time.sleep(0.1)
        if board.running:
            if own_log:
                shutil.rmtree(Path(log_path).parent, ignore_errors=True)
            return 0
        status = board.process.returncode
    lines = Path(log_path).read_text(errors="replace").splitlines()[-5:]
    raise ArmBoardError(f"the emulated {arch} agent exited with status {status}: "
                         + (" | ".join(lines) or f"see {log_path}"))


class ArmBoardError(RuntimeError):
    """The emulated ARM board failed (its agent exited)."""


class ArmRootMissing(ArmBoardError):
    """The emulated ARM board cannot start: no root, or no qemu-user."""


def arch_spec(arch: str) -> ArmArch:
    """The ``ArmArch`` called ``arch``; ValueError naming the known ones otherwise."""
    if arch not in ARCHES:
        raise ValueError(f"unknown board architecture {arch!r}; known: {', '.join(ARCHES)}")
    return ARCHES[arch]


def default_root(arch: str) -> Path:
    """Where ``make board-<arch>`` puts the root, unless ``TINYSEP_<ARCH>_ROOT`` says otherwise."""
    override = os.environ.get(ROOT_ENV.format(arch=arch.upper()))
    if override:
        return Path(override).resolve()
    return BUILD_DIR / f"board-{arch}" / "root"


def read_stamp(root: Path) -> dict | None:
    """The build record of a finished root (None when the root is absent or unfinished)."""
    stamp = Path(root) / STAMP_NAME
    try:
        record = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def check_root(arch: str, root: str | Path | None = None) -> Path:
    """The root folder of a finished build for ``arch``; ArmRootMissing saying how to make it."""
    spec = arch_spec(arch)
    root = Path(root).resolve() if root is not None else default_root(arch)
    how = f"build it with `make {spec.make_target}` in {REPO_ROOT}"
    if read_stamp(root) is None or not (root / GUEST_PYTHON.lstrip("/")).exists():
        raise ArmRootMissing(f"no emulated {arch} board root at {root}: {how}")
    if shutil.which(spec.qemu) is None:
        raise ArmRootMissing(
            f"{spec.qemu} is not on PATH (Debian package qemu-user-static): {how}, "
            "which installs it through `make system-deps`"
        )
    return root


def root_available(arch: str) -> bool:
    """True when the emulated board for ``arch`` can start."""
    try:
        check_root(arch)
    except ArmRootMissing:
        return False
    return True


def agent_launcher(arch: str, root: str | Path | None = None) -> tuple:
    """(interpreter command, extra environment) that run the agent's Python inside the root.

    The interpreter command replaces ``python`` in ``python -m firmware_host.board ...``; the
    environment adds the root's BLAS folders (guest paths) and keeps numpy to one thread.
    """
    spec = arch_spec(arch)
    root = check_root(arch, root)
    command = [shutil.which(spec.qemu), "-L", str(root), str(root) + GUEST_PYTHON]
    libs = [f"/usr/lib/{spec.triplet}/blas", f"/usr/lib/{spec.triplet}/lapack"]
    env = {
        "LD_LIBRARY_PATH": os.pathsep.join(libs),
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPYCACHEPREFIX": str(root / PYCACHE),  # a host path: qemu leaves it alone
        "PYTHONDONTWRITEBYTECODE": "",  # empty is unset: the cache must fill
    }
    return command, env


def run_in_root(arch: str, code: str, root: str | Path | None = None, args=(),
                timeout: float = 300.0):
    """Run ``python3 -c code ARGS`` inside the root (repo on PYTHONPATH); the
    CompletedProcess."""
    command, extra = agent_launcher(arch, root)
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        command + ["-c", code] + [str(a) for a in args], env=env, capture_output=True,
        text=True, timeout=timeout, cwd=str(REPO_ROOT),
    )


PROBE = (
    "import json, platform, sys, numpy\n"
    "import firmware_host.board.__main__\n"  # fills the bytecode cache for the agent too
    "from firmware_host.board.runtime import load_runtime\n"
    "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(),"
    " 'numpy': numpy.__version__, 'runtime': load_runtime('auto').label}))\n"
)


def probe(arch: str, root: str | Path | None = None) -> dict:
    """What the emulated board runs: machine, Python, numpy and runtime versions."""
    result = run_in_root(arch, PROBE, root)
    if result.returncode != 0:
        raise ArmRootMissing(
            f"the emulated {arch} Python failed (status {result.returncode}): "
            f"{result.stderr.strip()[-800:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------- bench

# Runs inside the root: time interpreter.invoke() of a model on random int8 inputs with the
# runtime's default and reference kernels; prints one JSON line.
INVOKE_TIMER = """
import json, sys, time
import numpy as np
from firmware_host.board.runtime import load_runtime
model, warmup, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runtime = load_runtime("auto")
rows = []
for kernels in ("default", "reference"):
    interpreter = runtime.make_interpreter(model, kernels=kernels)
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        if dtype.kind in "iu":
            limits = np.iinfo(dtype)
            value = rng.integers(max(limits.min, -128), min(limits.max, 127) + 1,
                                 size=detail["shape"]).astype(dtype)
        else:
            value = rng.standard_normal(detail["shape"]).astype(dtype)
        interpreter.set_tensor(detail["index"], value)
    times = []
    for index in range(warmup + count):
        start = time.perf_counter()
        interpreter.invoke()
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1e6)
    rows.append({"kernels": kernels, "invoke_us_median": float(np.median(times)),
                 "invoke_us_p99": float(np.percentile(times, 99)), "invokes": count})
print(json.dumps({"runtime": runtime.label, "rows": rows}))
"""
EMULATED_NOTE = (
    "emulated: qemu-user runs the ARM runtime on this x86-64 host, so these times measure "
    "the emulator, not an ARM board (no real-time claim); the emulated boards are for "
    "correctness"
)


def bench_section(quick: bool = False) -> dict:
    """``tinysep bench`` section: invoke time of the shipped int8 bundle (K = 1) on every
    emulated ARM board whose root is built, labelled as emulated; the others are named in
    the note with how to build them."""
    columns = [["board", "board"], ["runtime", "runtime"], ["kernels", "kernels"],
               ["invoke_us_median", "invoke us (median)"], ["invoke_us_p99", "invoke us (p99)"],
               ["invokes", "invokes"]]
    result = {"title": "Invoke time on the emulated ARM boards (qemu-user: emulated, not "
              "real time)", "columns": columns, "rows": [], "emulated": True}
    notes = []
    warmup, count = (5, 50) if quick else (20, 400)
    for arch in ARCHES:
        try:
            check_root(arch)
        except ArmRootMissing as exc:
            notes.append(f"{arch} skipped: {exc}")
            continue
        from convert.bench import exported_bundle

        folder, _ = exported_bundle("int8", 1)
        done = run_in_root(arch, INVOKE_TIMER, args=(folder / MODEL_FILE, warmup, count))
        if done.returncode != 0:
            raise ArmBoardError(f"the emulated {arch} invoke timer failed: "
                                f"{done.stderr.strip()[-800:]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        for row in measured["rows"]:
            row.update(board=f"{arch} (emulated)", runtime=measured["runtime"])
            result["rows"].append(row)
    result["note"] = "\n".join(([EMULATED_NOTE] if result["rows"] else []) + notes)
    return result


# ---------------------------------------------------------------------------------- building


def _run(command: list, what: str) -> None:
    print("+ " + " ".join(command), flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise SystemExit(f"{what} failed (status {result.returncode}): {' '.join(command)}")


def _guest_python_version(root: Path) -> str:
    """'3.11' from the root's /usr/bin/python3.X (read from the file names, nothing is run)."""
    names = sorted(p.name for p in (root / "usr" / "bin").glob("python3.*")
                   if p.name[len("python3."):].isdigit())
    if not names:
        raise SystemExit(f"{root}/usr/bin has no python3.X: the Debian packages did not unpack")
    return names[-1][len("python"):]


def runtime_label(wheel: str) -> str:
    """What the agent reports for the runtime of ``wheel`` ('ai-edge-litert==1.4.0' ->
    'ai_edge_litert 1.4.0')."""
    name, _, version = wheel.partition("==")
    return f"{name.strip().replace('-', '_')} {version.strip()}"


def build_root(arch: str, wheel: str, root: Path | None = None,
               mirror: str | None = None, force: bool = False) -> dict:
    """Build (once) the root for ``arch`` with the runtime ``wheel`` ('NAME==VERSION', e.g.
    'ai-edge-litert==1.4.0'); its build record.

    A root whose record names the same packages and runtime is kept as it is. The new root is
    built beside the old one and moved in place at the end, so an interrupted build leaves
    no half-made root behind; a root whose Python cannot import the runtime is removed.
    """
    spec = arch_spec(arch)
    name, _, version = wheel.partition("==")
    if not name.strip() or not version.strip() or any(c in version for c in "<>=,; "):
        raise SystemExit(f"the runtime wheel must be NAME==VERSION, got {wheel!r}")
    root = Path(root).resolve() if root is not None else default_root(arch)
    wanted = {"arch": arch, "suite": spec.suite, "packages": list(DEBIAN_PACKAGES),
              "wheel": wheel}
    record = read_stamp(root)
    if not force and record is not None and all(record.get(k) == v for k, v in wanted.items()):
        print(f"emulated {arch} board root is up to date: {root}")
        return record
    for tool, package in (("mmdebstrap", "mmdebstrap"), (spec.qemu, "qemu-user-static")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH: install the Debian package {package} "
                             "(`make system-deps` as root)")
    started = time.monotonic()
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}-new-", dir=str(root.parent)))
    try:
        new_root = work / "root"
        command = ["mmdebstrap", "--variant=extract", f"--arch={spec.debian_arch}",
                   "--include=" + ",".join(DEBIAN_PACKAGES), spec.suite, str(new_root)]
        command.append(mirror or DEBIAN_MIRROR)
        _run(command, "mmdebstrap")
        python = _guest_python_version(new_root)
        wheels = work / "wheels"
        platforms = []
        for tag in spec.wheel_platforms():
            platforms += ["--platform", tag]
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
              "--only-binary=:all:", *platforms, "--python-version", python,
              "--dest", str(wheels), wanted["wheel"]], "pip download")
        found = sorted(wheels.glob("*.whl"))
        if len(found) != 1:
            raise SystemExit(f"expected one wheel in {wheels}, found {[p.name for p in found]}")
        site = new_root / "usr" / "local" / "lib" / f"python{python}" / "dist-packages"
        site.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(found[0]) as archive:
            archive.extractall(site)
        for path in site.rglob("*.so*"):  # zip files keep no permission bits
            path.chmod(0o755)
        (new_root / PYCACHE).mkdir(parents=True, exist_ok=True)
        record = dict(wanted, wheel_file=found[0].name, python=python)
        (new_root / STAMP_NAME).write_text(json.dumps(record, indent=2) + "\n")
        if root.exists():
            shutil.rmtree(root)
        new_root.rename(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # the first start fills the bytecode cache (its path names the final folder)
    try:
        found_runtime = probe(arch, root)
    except (ArmRootMissing, subprocess.TimeoutExpired, ValueError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise SystemExit(f"the new {arch} root does not run: {exc}") from None
    if found_runtime["runtime"] != runtime_label(wheel):
        shutil.rmtree(root, ignore_errors=True)
        raise SystemExit(f"the new {arch} root runs {found_runtime['runtime']}, "
                         f"not {runtime_label(wheel)}")
    record.update(found_runtime, build_seconds=round(time.monotonic() - started, 1),
                  size_bytes=_folder_bytes(root))
    (root / STAMP_NAME).write_text(json.dumps(record, indent=2) + "\n")
    print(f"emulated {arch} board root: {root} ({record['size_bytes'] / 2**20:.0f} MiB, "
          f"built in {record['build_seconds']:.0f} s)")
    return record


def _folder_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hil.emulated_arm",
        description="Build or check the root of an emulated ARM board.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the root once (no foreign code runs)")
    build.add_argument("--arch", default="arm64", choices=tuple(ARCHES))
    build.add_argument("--wheel", required=True, metavar="NAME==VERSION",
                       help="the runtime wheel, e.g. ai-edge-litert==1.4.0")
    build.add_argument("--root", type=Path, default=None, help="folder (default build/)")
    build.add_argument("--mirror", default=None, help="Debian mirror URL")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    check = commands.add_parser("check", help="start the emulated Python and print versions")
    check.add_argument("--arch", default="arm64", choices=tuple(ARCHES))
    check.add_argument("--root", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "build":
        build_root(args.arch, args.wheel, args.root, args.mirror, args.force)
        return 0
    try:
        print(json.dumps(probe(args.arch, args.root)))
    except ArmRootMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

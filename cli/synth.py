"""Write a synthetic music corpus from several music engines, in MIR-1K layout plus stems.

Wavfile/{singer}_{song}_{clip}.wav: 16 kHz 16-bit stereo, left accompaniment, right
vocals; Stems/{clip}/{vocals,drums,bass,other}.wav: the four stems of each clip;
splits.json: song-disjoint train/valid/test clip lists, the parameters and, per song and
clip, its vocal engine, accompaniment engine, sound font, voice and (when the corpus names
its composers) composer and collection of recordings, so evaluation can hold one out. By
default every engine but `subtractive`, `espeak`, `flite`, `recorded` and `speech` plays, the loops
compose and the production is randomized;
a missing engine names the Debian package to install (`make system-deps`).
The same arguments always write the same bytes.
"""

from __future__ import annotations

import argparse
import os

from cli.common import seed_argument
from tinysep.data.engines import (
    ACCOMPANIMENT_ENGINES,
    COMPOSERS,
    ENGINES,
    STANDARD_ENGINES,
    VOCAL_ENGINES,
)
from tinysep.data.espeak_singing import DEFAULT_ESPEAK_VOICES, ESPEAK_VOICES
from tinysep.data.flite_singing import FLITE_VOICES
from tinysep.data.recordings import COLLECTIONS, DEFAULT_COLLECTIONS
from tinysep.data.singing import DEFAULT_VOICES, VOICES
from tinysep.data.soundfont import DEFAULT_FONTS, FONTS
from tinysep.data.speech_singing import DEFAULT_SPEECH_VOICES, SPEECH_VOICES

USES_TENSORFLOW = False  # the command starts without loading TensorFlow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write (new, empty, or an "
                        "earlier corpus with the same parameters)")
    parser.add_argument("--songs", type=int, default=100, help="number of songs (default 100)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="length of each song in seconds, cut into 4-10 s clips (default 30)")
    parser.add_argument("--seed", type=seed_argument, default=0, help="random seed (default 0)")
    parser.add_argument("--engines", default=",".join(STANDARD_ENGINES),
                        help="comma-separated engines a song draws from, among "
                        f"{', '.join(ENGINES)} (default {','.join(STANDARD_ENGINES)}; "
                        "subtractive, espeak, flite, recorded and speech play when named); "
                        "vocal engines: "
                        f"{', '.join(VOCAL_ENGINES)}; "
                        f"accompaniment engines: {', '.join(ACCOMPANIMENT_ENGINES)}; "
                        "'--engines additive' writes the original single-engine corpus")
    parser.add_argument("--fonts", default=None,
                        help="comma-separated sound fonts for the soundfont and choir engines: "
                        f"names among {', '.join(FONTS)} or .sf2/.sf3 paths (default "
                        f"{','.join(DEFAULT_FONTS)}; leave one out to hold it out for "
                        "evaluation)")
    parser.add_argument("--voices", default=None,
                        help="comma-separated voices: Festival voices for the festival engine, "
                        f"among {', '.join(VOICES)} (default {','.join(DEFAULT_VOICES)}), and "
                        "eSpeak NG voices for the espeak engine, among "
                        f"{', '.join(ESPEAK_VOICES)} (default "
                        f"{','.join(DEFAULT_ESPEAK_VOICES)}), and Flite voices for the flite "
                        f"engine, among {', '.join(FLITE_VOICES)} (default all), and recorded "
                        "people for the speech engine (hw-: Hedgewars' voice packs, kl-: "
                        "KLettres' speakers, kt-: KTuberling's), among "
                        f"{', '.join(SPEECH_VOICES)} "
                        f"(default {','.join(DEFAULT_SPEECH_VOICES)}); leave one out to hold it "
                        "out for evaluation")
    parser.add_argument("--composers", default=None,
                        help="comma-separated composers a song's score is drawn from, among "
                        f"{', '.join(COMPOSERS)}: loops (4/4, one bar pattern per part, the "
                        "default) and through (3/4, 6/8, swung and straight 4/4, parts "
                        "redrawn from bar to bar); naming them records each song's composer")
    parser.add_argument("--recordings", default=None,
                        help="comma-separated collections of instrumental recordings the "
                        f"recorded engine plays excerpts of: names among {', '.join(COLLECTIONS)} "
                        "(Debian's free game soundtracks) or paths of folders of your own "
                        "audio files, written with a '/' (./mine, ~/music/backing); default "
                        f"{','.join(DEFAULT_COLLECTIONS)}; leave one out to hold it out for "
                        "evaluation")
    parser.add_argument("--no-production", action="store_true",
                        help="dry stems: no rooms, EQ, dynamics, saturation or noise")
    parser.add_argument("--no-stems", action="store_true",
                        help="write only the stereo clips, not Stems/{clip}/*.wav")
    parser.add_argument("--backing-vocals", type=float, default=0.0, metavar="SHARE",
                        help="share of additive, festival, espeak, flite and speech songs (0-1) "
                        "that also get backing vocals of their own engine: a harmony line or "
                        "sustained chord oohs (default 0)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes rendering songs (default min(2, CPUs))")
    parser.add_argument("--no-progress", "--quiet", dest="quiet", action="store_true",
                        help="no progress output (as --no-progress of the other commands)")


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError, check_output_folder
    from tinysep.data.engines import EngineUnavailable
    from tinysep.data.synth import write_corpus

    check_output_folder(args.out)

    try:
        summary = write_corpus(args.out, songs=args.songs, seconds=args.seconds,
                               seed=args.seed, progress=not args.quiet, engines=args.engines,
                               fonts=args.fonts, production=not args.no_production,
                               stems=not args.no_stems, workers=args.workers,
                               backing_vocals=args.backing_vocals, voices=args.voices,
                               composers=args.composers, recordings=args.recordings)
    except EngineUnavailable as exc:
        raise CliError(f"{exc} (or leave the engine out with --engines)") from exc
    written = sum(summary.songs.values())
    skipped = f" ({len(summary.skipped)} of {args.songs} skipped)" if summary.skipped else ""
    print(f"wrote {written} songs{skipped} x {args.seconds:g} s (seed {args.seed}) to "
          f"{summary.out_dir} in {summary.elapsed:.1f} s")
    print(f"{'split':<6} {'songs':>6} {'clips':>6} {'minutes':>8}")
    for split in summary.clips:
        print(f"{split:<6} {summary.songs[split]:>6} {summary.clips[split]:>6} "
              f"{summary.seconds[split] / 60:>8.2f}")
    print(f"{'total':<6} {sum(summary.songs.values()):>6} {sum(summary.clips.values()):>6} "
          f"{summary.total_minutes:>8.2f}")
    print("songs per engine (vocals / accompaniment, font, composer when named):")
    for name, count in summary.engines.items():
        print(f"  {count:>5}  {name}")
    print(f"skipped songs: {len(summary.skipped)}")
    for song, reason in summary.skipped.items():
        print(f"  {song}: {reason}")
    print(f"splits and parameters: {summary.out_dir / 'splits.json'}")
    return 0

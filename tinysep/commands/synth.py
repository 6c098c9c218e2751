"""Write a synthetic music corpus (singing voice over chords, bass and drums) in MIR-1K layout.

Wavfile/{singer}_{song}_{clip}.wav: 16 kHz 16-bit stereo, left accompaniment, right
vocals; splits.json: song-disjoint train/valid/test clip lists and the parameters.
The same arguments always write the same bytes.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write (new, empty, or an "
                        "earlier corpus with the same parameters)")
    parser.add_argument("--songs", type=int, default=100, help="number of songs (default 100)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="length of each song in seconds, cut into 4-10 s clips (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tinysep.data.synth import write_corpus

    summary = write_corpus(args.out, songs=args.songs, seconds=args.seconds, seed=args.seed,
                           progress=not args.quiet)
    print(f"wrote {args.songs} songs x {args.seconds:g} s (seed {args.seed}) to "
          f"{summary.out_dir} in {summary.elapsed:.1f} s")
    print(f"{'split':<6} {'songs':>6} {'clips':>6} {'minutes':>8}")
    for split in summary.clips:
        print(f"{split:<6} {summary.songs[split]:>6} {summary.clips[split]:>6} "
              f"{summary.seconds[split] / 60:>8.2f}")
    print(f"{'total':<6} {sum(summary.songs.values()):>6} {sum(summary.clips.values()):>6} "
          f"{summary.total_minutes:>8.2f}")
    print(f"splits and parameters: {summary.out_dir / 'splits.json'}")
    return 0

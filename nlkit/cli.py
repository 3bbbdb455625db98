"""The `nlkit` command line (also `python -m nlkit`).

Bad input, and the machine's own errors (a full disk, an unwritable folder), end with one line on stderr and exit
code 2, and nothing is written. Output piped into a reader that stops early (`| head`) ends quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .errors import ENVIRONMENT_ERRNOS, Terminated, UserError, check_rate, check_seed, describe_os_error
from .pipeline.cli import add_commands as add_pipeline_commands

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as a single line (no usage dump)."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def _slice(text: str) -> slice:
    try:
        start, stop = (int(v) if v else None for v in text.split(":"))
    except ValueError:
        raise UserError(f"--clean-slice must look like START:STOP, got {text!r}") from None
    return slice(start, stop)


def _seed(text: str) -> int:
    try:
        return check_seed(int(text))
    except (ValueError, UserError):
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**32), got {text!r}") from None


def _classes(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer of at least {minimum}, got {text!r}")
        return value

    return parse


def _refuse_overwriting_inputs(out: str, *inputs) -> None:
    """--out (or the .json sidecar written beside it) must not be one of the files read."""
    from .noise.labelfiles import split_label_spec

    targets = {Path(out).resolve(), Path(out).with_suffix(".json").resolve()}
    for spec in inputs:
        if spec and split_label_spec(spec)[0].resolve() in targets:
            raise UserError(f"--out {out} would overwrite the input {spec}; write to another file")


def _save(out: str, labels, meta: dict) -> None:
    from .noise import save_labels

    try:
        save_labels(out, labels, meta)
    except OSError as e:
        raise UserError(f"cannot write --out {out}: {describe_os_error(e)}") from None


def _cmd_noise_make(args) -> int:
    from .noise import make_noise, read_labels

    check_rate(args.rate)
    _refuse_overwriting_inputs(args.out, args.labels)
    labels = read_labels(args.labels, num_classes=args.num_classes)
    result = make_noise(labels, args.kind, args.rate, args.num_classes, args.seed,
                        asym_map=args.asym_map, selection=args.selection)
    result.meta["source_labels"] = args.labels
    _save(args.out, result.noisy, result.meta)
    print(f"wrote {args.out} ({len(result.noisy)} labels, {result.meta['generator']} p={args.rate:g}, "
          f"realised rate {result.realised_rate:.4f})")
    return 0


def _cmd_noise_hybrid(args) -> int:
    from .noise import plc_hybrid, read_labels

    check_rate(args.rate)
    _refuse_overwriting_inputs(args.out, args.base, args.clean)
    base = read_labels(args.base, num_classes=args.num_classes)
    clean = None
    if args.clean:
        clean = read_labels(args.clean, num_classes=args.num_classes)
        clean = clean[_slice(args.clean_slice)] if args.clean_slice else clean
        if len(clean) != len(base):
            raise UserError(f"--clean has {len(clean)} labels but --base {len(base)}; "
                            "select the matching part with --clean-slice START:STOP")
    result = plc_hybrid(base, args.kind, args.rate, args.num_classes, seed=args.seed, clean=clean)
    result.meta.update(base=args.base, changed_vs_base=float(np.mean(result.noisy != base)))
    _save(args.out, result.noisy, result.meta)
    against = "clean labels" if clean is not None else "base labels"
    print(f"wrote {args.out} ({len(result.noisy)} labels; {result.meta['changed_vs_base']:.2%} changed vs base; "
          f"rate vs {against} {result.realised_rate:.4f})")
    return 0


def _format_report(rep: dict) -> str:
    import pandas as pd

    c = rep["num_classes"]
    lines = [f"n = {rep['n']}, classes = {c}",
             f"realised noise rate = {rep['noise_rate']:.4f}",
             f"classes whose most frequent noisy label is still the true class: "
             f"{rep['classes_with_true_plurality']} of {c}", ""]
    per = pd.Series(rep["per_class_noise_rate"], name="noise rate")
    per.index.name = "clean class"
    lines += ["per-class noise rate:", per.to_frame().T.round(4).to_string(), ""]
    if rep["top_confusions"]:
        lines.append("largest flows clean -> noisy:")
        lines += [f"  {t['clean']} -> {t['noisy']}: {t['count']} ({t['share_of_class']:.1%} of class {t['clean']})"
                  for t in rep["top_confusions"]]
    if c <= 20:
        T = pd.DataFrame(np.asarray(rep["transition_matrix"]) * 100).round(1)
        T.index.name, T.columns.name = "clean", "noisy %"
        lines += ["", "transition matrix (rows = clean class, %):", T.to_string()]
    return "\n".join(lines)


def _cmd_noise_report(args) -> int:
    from .noise import noise_report, read_labels

    clean = read_labels(args.clean, num_classes=args.num_classes)
    if args.clean_slice:
        clean = clean[_slice(args.clean_slice)]
    noisy = read_labels(args.noisy, num_classes=args.num_classes)
    if len(clean) != len(noisy):
        raise UserError(f"--clean has {len(clean)} labels but --noisy {len(noisy)}; "
                        "select the matching part of the clean labels with --clean-slice START:STOP")
    if args.num_classes is None and clean.max() != noisy.max():
        # e.g. CIFAR-100 fine labels against coarse ones: a transition between different label sets
        raise UserError(f"--clean uses classes 0..{clean.max()} but --noisy 0..{noisy.max()}: the two label sets "
                        f"have different class counts ({clean.max() + 1} vs {noisy.max() + 1}); compare labels of "
                        "the same kind, or pass --num-classes to report them anyway")
    rep = noise_report(clean, noisy, args.num_classes)
    print(json.dumps(rep, indent=2) if args.json else _format_report(rep))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .noise import ASYM_MAPS, CLASS_CONDITIONAL_KINDS

    p = _Parser(prog="nlkit", description="Reproducibility kit for learning with noisy labels.")
    p.add_argument("--version", action="version", version=f"nlkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    noise = sub.add_parser("noise", help="make, re-draw and inspect noisy label files")
    nsub = noise.add_subparsers(dest="noise_command", required=True, parser_class=_Parser)
    label_help = "label file PATH[:FIELD]: .npy, .csv (FIELD = column) or .pt (FIELD = key)"

    mk = nsub.add_parser("make", help="class-conditional noise from clean labels")
    mk.add_argument("--labels", required=True, help=f"clean labels, {label_help}")
    mk.add_argument("--kind", required=True, choices=CLASS_CONDITIONAL_KINDS)
    mk.add_argument("--rate", required=True, type=float, help="nominal noise rate p in [0, 1]")
    mk.add_argument("--seed", required=True, type=_seed, help="an integer in [0, 2**32)")
    mk.add_argument("--num-classes", required=True, type=_classes(2))
    mk.add_argument("--asym-map", choices=sorted(ASYM_MAPS),
                    help="flip map for --kind asym (default asym_c10 for 10 classes)")
    mk.add_argument("--selection", default="bernoulli", choices=("bernoulli", "exact"),
                    help="Bernoulli(p) per sample, or exactly floor(p*N) samples")
    mk.add_argument("--out", required=True, help="output .npy (a .json sidecar is written beside it)")
    mk.set_defaults(func=_cmd_noise_make)

    hy = nsub.add_parser("hybrid", help="PLC/LRA hybrid: re-draw PMD labels with uniform or asymmetric noise")
    hy.add_argument("--base", required=True, help=f"base (PMD-35%%) labels, {label_help}")
    hy.add_argument("--kind", required=True, choices=("uniform", "asym"))
    hy.add_argument("--rate", required=True, type=float)
    hy.add_argument("--num-classes", required=True, type=int, choices=(10, 100))
    hy.add_argument("--seed", type=_seed, default=77, help="77 reproduces the published files (default)")
    hy.add_argument("--clean", help="clean labels to measure the realised rate against (optional)")
    hy.add_argument("--clean-slice", help="START:STOP part of --clean matching the base (e.g. 0:45000)")
    hy.add_argument("--out", required=True)
    hy.set_defaults(func=_cmd_noise_hybrid)

    rp = nsub.add_parser("report", help="realised noise rate, per-class rates and transition matrix")
    rp.add_argument("--clean", required=True, help=label_help)
    rp.add_argument("--noisy", required=True, help=label_help)
    rp.add_argument("--num-classes", type=_classes(1), help="number of classes (default: inferred)")
    rp.add_argument("--clean-slice", help="compare only START:STOP of the clean labels (e.g. 0:45000 for PMD files)")
    rp.add_argument("--json", action="store_true", help="print JSON instead of tables")
    rp.set_defaults(func=_cmd_noise_report)

    add_pipeline_commands(sub)
    from .doctor import add_command as add_doctor_command

    add_doctor_command(sub)
    return p


def _error(msg: str) -> int:
    msg = " ".join(str(msg).split())
    print(f"nlkit: error: {msg}" if not msg.startswith("nlkit") else f"{msg}", file=sys.stderr)
    return EXIT_USAGE


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"nlkit: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _terminate(signum, frame):
    raise Terminated(128 + signum)


def main(argv=None) -> int:
    import signal
    import threading

    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning
    # SIGTERM unwinds like Ctrl-C, so kernels are shut down and their connection files removed
    sigterm = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except UserError as e:
        return _error(str(e))
    except BrokenPipeError:  # `nlkit noise report ... | head`: the reader has what it wanted
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        except (OSError, ValueError):
            pass
        return 0
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        return _error(describe_os_error(e))
    except KeyboardInterrupt:
        print("nlkit: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)


if __name__ == "__main__":
    sys.exit(main())

"""bf16 vs fp32 autocast for DivideMix / InstanceGM on a reduced CPU run (docs/instancegm.md §13.1).

scikit-learn digits (all 1,437 training and 360 test images) with the cifar10-idn-0.50 cell's smoke settings, the
small CNN, 2 warm-up + 6 semi-supervised epochs; each seed once in fp32 and once with CPU bf16 autocast forced on
(the kit itself runs the CPU in fp32). Per seed: last-epoch ensemble accuracy and mean division AUC of both runs,
and, for the fp32 run's final network 1, eval_train's clean posteriors computed in fp32 and in bf16 (largest change
of w, labelled-set changes, AUC of w, distinct losses). Writes one JSON to results/.

    python benchmarks/precision_instancegm.py --method dividemix --seeds 5
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nlkit.methods import instancegm as igm  # noqa: E402
from nlkit.methods.instancegm import dividemix as dmod  # noqa: E402
from nlkit.methods.instancegm import train as tmod  # noqa: E402
from nlkit.pipeline import load_cell  # noqa: E402
from nlkit.pipeline.runner import git_commit  # noqa: E402


def cpu_autocast(device, enabled=True):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def measure(method: str, seeds: int) -> list[dict]:
    from sklearn.metrics import roc_auc_score

    cell = load_cell(ROOT / f"params/instancegm/cifar10-idn-0.50-{method}.yaml", "smoke")
    cell.update(train_subset=None, test_subset=None)
    data = igm.prepare(cell, 0)
    cfg = replace(igm.InstanceGMConfig.from_cell(cell), epochs=8, warmup_epochs=2, lr_drop_epoch=6, rampup_epochs=2)
    dmod.autocast_for = tmod.autocast_for = cpu_autocast   # bf16 on the CPU, for this measurement only
    rows = []
    for seed in range(seeds):
        row = {"seed": seed}
        for bf16 in (False, True):
            run = igm.train_instancegm(data, replace(cfg, bf16=bf16), seed, progress=False)
            tag = "bf16" if bf16 else "fp32"
            row.update({f"acc_{tag}": run.metrics["acc_last"],
                        f"auc_mean_{tag}": float(np.mean([d["auc"] for d in run.divisions]))})
            if bf16:
                continue
            trainer, outs = run.trainer, {}
            for b in (False, True):   # the same network's division in fp32 and in bf16
                trainer.cfg = replace(trainer.cfg, bf16=b)
                outs[b] = (trainer.per_sample_loss(0).numpy(), trainer.clean_probability(0, 99))
            (l32, w32), (l16, w16) = outs[False], outs[True]
            row.update(distinct_losses_fp32=int(len(np.unique(l32))), distinct_losses_bf16=int(len(np.unique(l16))),
                       max_abs_dw=float(np.abs(w32 - w16).max()), labelled_changes=int(((w32 > .5) != (w16 > .5)).sum()),
                       auc_w_fp32=float(roc_auc_score(data.clean_mask, w32)),
                       auc_w_bf16=float(roc_auc_score(data.clean_mask, w16)))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=("dividemix", "instancegm"), default="dividemix")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = measure(args.method, args.seeds)
    commit = git_commit() or "unknown"
    record = {"benchmark": "instancegm_precision", "method": args.method, "rows": rows, "git_commit": commit,
              "device": f"cpu ({platform.processor() or platform.machine()}, 1 thread)", "torch": torch.__version__,
              "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"instancegm-precision-{args.method}-{commit[:8]}.json"
    path.write_text(json.dumps(record, indent=1))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

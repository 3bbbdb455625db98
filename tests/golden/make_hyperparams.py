"""Write the originals' hyperparameters as JSON (tests/golden/hyperparams/<paper>.json), READ from their checkouts.

    python tests/golden/make_hyperparams.py --dividemix DIR --instancegm DIR --sln DIR --lra DIR --tdsm DIR --edm DIR

Nothing is run: the scripts are parsed with `ast` (argparse and click defaults, function defaults, the keyword
arguments of calls such as `optim.SGD(...)`, constants assigned under `if args.dataset == ...`), and the README
command lines of the published tables are split into flags. Each value records where it was read, as
`owner/repo/path@commit:line`. A setting ("cifar10/sym/sln", "instanceGM.py/cifar100", ...) is the script's defaults
overlaid with one README command's flags; `tests/test_golden_hyperparams.py` compares the kit's resolved paper-profile
cells with them field by field.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shlex
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent / "hyperparams"


class Original:
    """One checkout: reads files, records `repo/path@commit:line` for every value taken from it."""

    def __init__(self, root: str, repo: str):
        self.root, self.repo = Path(root), repo
        self.commit = subprocess.run(["git", "-C", str(self.root), "rev-parse", "HEAD"], check=True,
                                     capture_output=True, text=True).stdout.strip()
        self._trees: dict[str, ast.Module] = {}

    def src(self, path: str, line: int | None = None) -> str:
        return f"{self.repo}/{path}@{self.commit[:7]}" + (f":{line}" if line else "")

    def text(self, path: str) -> str:
        return (self.root / path).read_text(encoding="utf-8", errors="replace")

    def tree(self, path: str) -> ast.Module:
        if path not in self._trees:
            self._trees[path] = ast.parse(self.text(path), filename=path)
        return self._trees[path]

    def value(self, value, path: str, line: int | None, how: str = "") -> dict:
        out = {"value": value, "src": self.src(path, line)}
        if how:
            out["how"] = how
        return out

    def meta(self) -> dict:
        return {"repo": self.repo, "commit": self.commit}


# ---------------------------------------------------------------------------------------------- ast readers

def _name(node) -> str:
    """`a.b.c` of a Name/Attribute chain ('' otherwise)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _literal(node):
    return ast.literal_eval(node)


def argparse_options(o: Original, path: str) -> tuple[dict, dict]:
    """argparse defaults {dest: record} and {option string: dest} of every `*.add_argument(...)` call."""
    defaults, aliases = {}, {}
    for node in ast.walk(o.tree(path)):
        if isinstance(node, ast.Call) and _name(node.func).endswith("add_argument"):
            flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            kw = {k.arg: k.value for k in node.keywords}
            dest = _literal(kw["dest"]) if "dest" in kw else \
                next((f for f in flags if f.startswith("--")), flags[0]).lstrip("-").replace("-", "_")
            for f in flags:
                aliases[f.lstrip("-").replace("-", "_")] = dest
            if "default" in kw:
                defaults[dest] = o.value(_literal(kw["default"]), path, node.lineno, "argparse default")
    return defaults, aliases


def click_options(o: Original, path: str) -> tuple[dict, dict]:
    """click defaults {name: record} and {option string: name} of every `@click.option(...)` decorator."""
    defaults, aliases = {}, {}
    for node in ast.walk(o.tree(path)):
        if isinstance(node, ast.Call) and _name(node.func) == "click.option":
            strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            flags = [s for s in strings if s.startswith("-")]
            plain = [s for s in strings if not s.startswith("-")]
            longest = max(flags, key=len).lstrip("-").replace("-", "_")
            dest = plain[0] if plain else longest
            for f in flags:
                aliases[f.lstrip("-").replace("-", "_")] = dest
            kw = {k.arg: k.value for k in node.keywords}
            if "default" in kw:
                defaults[dest] = o.value(_literal(kw["default"]), path, node.lineno, "click default")
            if "type" in kw and isinstance(kw["type"], ast.Call) and _name(kw["type"].func) == "click.Choice":
                defaults.setdefault(f"{dest}.choices", o.value(_literal(kw["type"].args[0]), path, node.lineno,
                                                               "click.Choice"))
    return defaults, aliases


def function_defaults(o: Original, path: str, func: str, cls: str | None = None) -> dict:
    """Keyword defaults of `def func(...)` (inside `class cls` when given)."""
    scope = o.tree(path)
    if cls:
        scope = next(n for n in ast.walk(scope) if isinstance(n, ast.ClassDef) and n.name == cls)
    fn = next(n for n in ast.walk(scope) if isinstance(n, ast.FunctionDef) and n.name == func)
    args = fn.args.args[len(fn.args.args) - len(fn.args.defaults):]
    pairs = list(zip(args, fn.args.defaults)) + [(a, d) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults)
                                                 if d is not None]
    out = {}
    for a, d in pairs:
        try:
            out[a.arg] = o.value(_literal(d), path, d.lineno, f"default of {cls + '.' if cls else ''}{func}()")
        except ValueError:   # not a literal (e.g. torch.device('cuda')): not a hyperparameter
            pass
    return out


def calls(o: Original, path: str, suffix: str, scope: ast.AST | None = None) -> list[ast.Call]:
    """Calls whose callee name ends with `suffix` (e.g. 'optim.SGD', 'GaussianMixture'), in source order."""
    found = [n for n in ast.walk(scope or o.tree(path)) if isinstance(n, ast.Call) and _name(n.func).endswith(suffix)]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def call_kwarg(o: Original, path: str, suffix: str, kwarg: str, how: str, scope=None) -> dict:
    """The literal keyword argument `kwarg` of the first call to `suffix` (records the line)."""
    for c in calls(o, path, suffix, scope):
        for k in c.keywords:
            if k.arg == kwarg:
                return o.value(_literal(k.value), path, c.lineno, how)
    raise LookupError(f"{path}: no {suffix}(..., {kwarg}=...)")


def compare_with(test: ast.AST, left: str) -> tuple[str, object] | None:
    """(operator, constant) of a test `left <op> constant`."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and _name(test.left) == left:
        right = test.comparators[0]
        if isinstance(right, ast.Constant):
            return type(test.ops[0]).__name__, right.value
    return None


def assignments(o: Original, path: str, target: str) -> list[tuple[object, str | None, int]]:
    """Constant assignments `target = C` at any depth: (C, the string an enclosing `if x == 'str'` compares with,
    line)."""
    out = []

    def visit(node, condition):
        for child in ast.iter_child_nodes(node):
            cond = condition
            if isinstance(child, ast.If):
                for part, c in ((child.body, _eq_string(child.test)), (child.orelse, None)):
                    holder = ast.Module(body=part, type_ignores=[])
                    visit(holder, c if c is not None else condition)
                continue
            if isinstance(child, ast.Assign) and len(child.targets) == 1 and _name(child.targets[0]) == target:
                try:
                    out.append((_literal(child.value), cond, child.lineno))
                except ValueError:
                    pass
            visit(child, cond)

    visit(o.tree(path), None)
    return out


def _eq_string(test) -> str | None:
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        right = test.comparators[0]
        if isinstance(right, ast.Constant) and isinstance(right.value, str):
            return right.value
    return None


def step_decay(o: Original, path: str) -> dict:
    """`if epoch >= N: lr /= F` → the 0-based drop epoch N and the factor 1/F."""
    for node in ast.walk(o.tree(path)):
        if isinstance(node, ast.If):
            cmp = compare_with(node.test, "epoch")
            aug = [s for s in node.body if isinstance(s, ast.AugAssign) and _name(s.target) == "lr"
                   and isinstance(s.op, ast.Div)]
            if cmp and cmp[0] == "GtE" and aug:
                return {"lr_drop_epoch": o.value(cmp[1], path, node.lineno, "if epoch >= N: lr /= F"),
                        "lr_drop_factor": o.value(1.0 / _literal(aug[0].value), path, aug[0].lineno,
                                                  "1 / F of lr /= F")}
    raise LookupError(f"{path}: no `if epoch >= N: lr /= F`")


def loss_coefficients(o: Original, path: str, func: str, names=("l1", "l2", "l3", "l4")) -> dict:
    """The constant factor of each `lK = c * term` in `def func` (1 when there is none)."""
    fn = next(n for n in ast.walk(o.tree(path)) if isinstance(n, ast.FunctionDef) and n.name == func)
    out = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and _name(node.targets[0]) in names:
            v, coef = node.value, 1.0
            if isinstance(v, ast.BinOp) and isinstance(v.op, ast.Mult):
                try:
                    coef = float(_literal(v.left))
                except ValueError:
                    coef = 1.0
            out[_name(node.targets[0])] = o.value(coef, path, node.lineno, f"factor of {_name(node.targets[0])}")
    return out


def transforms_of(o: Original, path: str) -> dict:
    """Crop padding and flip of the first training transform (RandomCrop(size, padding=p), RandomHorizontalFlip)."""
    crop = calls(o, path, "RandomCrop")[0]
    pad = next((_literal(k.value) for k in crop.keywords if k.arg == "padding"), 0)
    return {"crop_padding": o.value(pad, path, crop.lineno, "RandomCrop padding (none: 0)"),
            "flip": o.value(bool(calls(o, path, "RandomHorizontalFlip")), path,
                            (calls(o, path, "RandomHorizontalFlip") or [crop])[0].lineno, "RandomHorizontalFlip")}


def loader_batch_factor(o: Original, path: str, mode: str) -> dict:
    """`if mode == '<mode>': DataLoader(batch_size=self.batch_size[*K])` → K (1 without a factor)."""
    for node in ast.walk(o.tree(path)):
        if isinstance(node, ast.If) and _eq_string(node.test) == mode:
            for kw in (k for n in ast.walk(ast.Module(body=node.body, type_ignores=[])) if isinstance(n, ast.Call)
                       for k in n.keywords if k.arg == "batch_size"):
                if isinstance(kw.value, ast.BinOp) and isinstance(kw.value.op, ast.Mult):
                    return o.value(_literal(kw.value.right), path, kw.value.lineno, f"{mode} loader batch_size*K")
                if _name(kw.value) == "self.batch_size":
                    return o.value(1, path, kw.value.lineno, f"{mode} loader batch_size")
    raise LookupError(f"{path}: no {mode} loader")


def imported_as(o: Original, path: str, alias: str) -> str:
    for node in ast.walk(o.tree(path)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname == alias:
                    return a.name.replace(".", "/") + ".py"
    raise LookupError(f"{path}: nothing imported as {alias}")


# ---------------------------------------------------------------------------------------------- README commands

def readme_commands(o: Original, path: str, script: str) -> list[tuple[dict, int, str]]:
    """Every command line of `path` running `script`: ({flag: value}, line, the command as written). Lines ending
    in a backslash are joined; flags are `--k v`, `--k=v`, `-k v`; a flag without a value is True."""
    lines = o.text(path).splitlines()
    out, i = [], 0
    while i < len(lines):
        start, text = i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        m = re.search(r"(?:python|torchrun)\b[^\"`]*?\b" + re.escape(script) + r"\b([^\"`]*)", text)
        if not m:
            continue
        tokens, flags, k = shlex.split(m.group(1)), {}, 0
        while k < len(tokens):
            tok = tokens[k]
            if tok.startswith("-"):
                name, eq, val = tok.lstrip("-").partition("=")
                if not eq:
                    if k + 1 < len(tokens) and not tokens[k + 1].startswith("--"):
                        val, k = tokens[k + 1], k + 1
                    else:
                        val = True
                flags[name.replace("-", "_")] = _typed(val)
            k += 1
        out.append((flags, start + 1, " ".join(m.group(0).split())))
    return out


def _typed(val):
    if not isinstance(val, str):
        return val
    for conv in (int, float):
        try:
            return conv(val)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(val, val)


def overlay(o: Original, defaults: dict, aliases: dict, flags: dict, readme: str, line: int) -> dict:
    """Defaults overlaid with a command's flags (each flag's record points at the README line)."""
    out = dict(defaults)
    for name, val in flags.items():
        out[aliases.get(name, name)] = o.value(val, readme, line, "README command flag")
    return out


# ---------------------------------------------------------------------------------------------- per original

def sln(o: Original) -> dict:
    script = "noise_cifar_train.py"
    defaults, aliases = argparse_options(o, script)
    sgd = "optim.SGD"
    wrn = function_defaults(o, "networks/wideresnet.py", "__init__", cls="Wide_ResNet")
    shared = {
        "momentum": call_kwarg(o, script, sgd, "momentum", "optim.SGD momentum"),
        "weight_decay": call_kwarg(o, script, sgd, "weight_decay", "optim.SGD weight_decay"),
        "ema_alpha": function_defaults(o, "utils.py", "__init__", cls="WeightEMA")["alpha"],
        **{f"wrn_{k}": v for k, v in wrn.items() if k in ("depth", "widen_factor")},
        **transforms_of(o, "dataset.py"),   # get_cifar_dataset's train transform
    }
    # label correction in epochs `epoch > correction` (1-based loop); correction outside (0, epochs) means never
    for node in ast.walk(o.tree(script)):
        if isinstance(node, ast.If) and (cmp := _compare_attr(node.test, "epoch", "args.correction")):
            shared["lc_compare"] = o.value(cmp, script, node.lineno, "operator of `epoch ? args.correction`")
    settings = {"defaults": {"command": None, "values": {**defaults, **shared}}}
    for flags, line, command in readme_commands(o, "README.md", script):
        args = overlay(o, defaults, aliases, flags, "README.md", line)
        corr = args["correction"]["value"]
        method = "slnmolc" if 0 < corr < args["epochs"]["value"] else "sln"
        key = f"{args['dataset']['value']}/{args['noise_mode']['value']}/{method}"
        settings[key] = {"command": command, "src": o.src("README.md", line), "values": {**args, **shared}}
    return {"original": o.meta(), "settings": settings}


def _compare_attr(test, left: str, right: str) -> str | None:
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and _name(test.left) == left \
            and _name(test.comparators[0]) == right:
        return type(test.ops[0]).__name__
    return None


def _divmix_script(o: Original, script: str, dataset: str, flags: dict | None = None, readme_line=None,
                   command=None) -> dict:
    """A DivideMix-family training script's settings for one dataset: argparse defaults (plus a README command's
    flags), the per-dataset warm-up, the lr step, SGD, GMM, ramp-up, the warm-up loader's batch and the
    augmentation of the data module it imports, and (InstanceGM) the VAE's loss weights and learning rate."""
    defaults, aliases = argparse_options(o, script)
    args = overlay(o, defaults, aliases, flags or {}, "README.md", readme_line) if flags else dict(defaults)
    args["dataset"] = args.get("dataset") if flags and "dataset" in flags else o.value(dataset, script, None,
                                                                                       "dataset of this setting")
    v = dict(args)
    warm = [(val, cond, line) for val, cond, line in assignments(o, script, "warm_up")]
    pick = [w for w in warm if w[1] == dataset] or [w for w in warm if w[1] is None]
    v["warm_up"] = o.value(pick[0][0], script, pick[0][2], "warm_up (per dataset where the script branches)")
    v.update(step_decay(o, script))
    v["momentum"] = call_kwarg(o, script, "optim.SGD", "momentum", "optim.SGD momentum")
    v["weight_decay"] = call_kwarg(o, script, "optim.SGD", "weight_decay", "optim.SGD weight_decay")
    for k in ("max_iter", "tol", "reg_covar"):
        v[f"gmm_{k}"] = call_kwarg(o, script, "GaussianMixture", k, f"GaussianMixture {k}")
    v["rampup_length"] = function_defaults(o, script, "linear_rampup")["rampup_length"]
    v["neg_entropy_noise_mode"] = o.value(None, script, None, "no warm-up confidence penalty in this script")
    for node in ast.walk(o.tree(script)):   # `if args.r == 0.9: input_loss = history[-5:].mean(0)`
        if isinstance(node, ast.If) and (cmp := compare_with(node.test, "args.r")) and cmp[0] == "Eq":
            sl = next(n.slice for n in ast.walk(node)
                      if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Slice))
            v["loss_average_rate"] = o.value(cmp[1], script, node.lineno, "noise rate at which GMM losses are averaged")
            v["loss_average_epochs"] = o.value(-_literal(sl.lower), script, node.lineno, "history[-N:] averaged")
        if isinstance(node, ast.If) and _eq_string(node.test) == "asym" and "noise_mode" in ast.unparse(node.test):
            v["neg_entropy_noise_mode"] = o.value("asym", script, node.lineno,
                                                  "warm-up confidence penalty only for this noise mode")
    create = next(n for n in ast.walk(o.tree(script)) if isinstance(n, ast.FunctionDef) and n.name == "create_model")
    net = calls(o, script, "", create)[0]   # the first call builds the network: ResNet18(...) / vgg19_bn()
    v["network"] = o.value(_name(net.func).split(".")[-1], script, net.lineno, "the network create_model builds")
    data_module = imported_as(o, script, "dataloader")
    for mode in ("warmup", "eval_train", "test"):
        v[f"{mode}_batch_factor"] = loader_batch_factor(o, data_module, mode)
    v.update(transforms_of(o, data_module))
    vae = [n for n in ast.walk(o.tree(script)) if isinstance(n, ast.FunctionDef) and n.name == "vae_loss"]
    if vae:
        coef = loss_coefficients(o, script, "vae_loss")
        v.update({"recon_weight": coef["l1"], "noisy_ce_weight": coef["l2"], "prior_weight": coef["l3"],
                  "kl_weight": coef["l4"]})
        # the VAE's Adam lr is overwritten before every step by adjust_learning_rate -> vae_args.alpha_plan[epoch]
        # = vae_args.lr until epoch_decay_start; so vae_args.lr, not --vae_lr, is the effective rate
        lr = assignments(o, script, "vae_args.lr")
        decay = assignments(o, script, "vae_args.epoch_decay_start")
        v["vae_lr_effective"] = o.value(lr[-1][0], script, lr[-1][2], "vae_args.lr (alpha_plan before decay)")
        v["vae_epoch_decay_start"] = o.value(decay[-1][0], script, decay[-1][2], "vae_args.epoch_decay_start")
    out = {"command": command, "values": v}
    if readme_line:
        out["src"] = o.src("README.md", readme_line)
    return out


def dividemix(o: Original) -> dict:
    return {"original": o.meta(), "settings": {f"Train_cifar.py/{d}": _divmix_script(o, "Train_cifar.py", d)
                                               for d in ("cifar10", "cifar100")}}


def instancegm(o: Original) -> dict:
    settings = {}
    for flags, line, command in readme_commands(o, "README.md", "instanceGM.py"):
        dataset = flags.get("dataset", "cifar10")
        settings.setdefault(f"instanceGM.py/{dataset}",
                            _divmix_script(o, "instanceGM.py", dataset, flags, line, command))
    for d in ("cifar10", "cifar100"):   # the authors' DivideMix baseline: no README command, the script's defaults
        settings[f"temp.py/{d}"] = _divmix_script(o, "temp.py", d)
    for script, key in (("instanceGM_animal10N.py", "animal10n"), ("instanceGM_redMini.py", "red_mini_imagenet")):
        flags, line, command = readme_commands(o, "README.md", script)[0]
        settings[f"{script}/{key}"] = _divmix_script(o, script, key, flags, line, command)
    return {"original": o.meta(), "settings": settings}


def lra(o: Original) -> dict:
    script = "train_CIFAR.py"
    defaults, aliases = argparse_options(o, script)
    train_fn = next(n for n in ast.walk(o.tree(script)) if isinstance(n, ast.FunctionDef) and n.name == "train")
    shared = {
        "lr_input": call_kwarg(o, script, "adjust_learning_rate", "lr_input", "adjust_learning_rate lr_input",
                               train_fn),
        "lr_horizon": call_kwarg(o, script, "adjust_learning_rate", "n_epochs", "adjust_learning_rate n_epochs",
                                 train_fn),
        "beta_schedule": function_defaults(o, "model_diffusion.py", "__init__", cls="Diffusion")["beta_schedule"],
        "num_timesteps": function_defaults(o, "model_diffusion.py", "__init__", cls="Diffusion")["num_timesteps"],
        **transforms_of(o, script),
        **{f"beta_{k}": call_kwarg(o, "model_diffusion.py", "make_beta_schedule", k, f"make_beta_schedule {k}")
           for k in ("start", "end")},
    }
    clip = calls(o, script, "clip_grad_norm_", train_fn)[0]
    shared["grad_clip"] = o.value(_literal(clip.args[1]), script, clip.lineno, "clip_grad_norm_ max_norm")
    for node in ast.walk(train_fn):   # `if epoch % 5 == 0 and epoch >= warmup_epochs:` validates
        if isinstance(node, ast.If) and isinstance(node.test, ast.BoolOp):
            for part in node.test.values:
                if isinstance(part, ast.Compare) and isinstance(part.left, ast.BinOp) \
                        and isinstance(part.left.op, ast.Mod) and _name(part.left.left) == "epoch":
                    shared["eval_every"] = o.value(_literal(part.left.right), script, node.lineno, "epoch % N == 0")
    real_fp = {c: (v, line) for v, c, line in assignments(o, script, "real_fp")}
    settings = {}
    commands = readme_commands(o, "README.md", script)
    for dataset in ("cifar10", "cifar100"):
        for enc in ("SimCLR", "CLIP"):
            match = [(f, line, cmd) for f, line, cmd in commands
                     if f.get("noise_type", "").split("-")[0] == dataset and f.get("fp_encoder") == enc]
            args = overlay(o, defaults, aliases, match[0][0], "README.md", match[0][1]) if match else dict(defaults)
            args["fp_encoder"] = args["fp_encoder"] if match else o.value(enc, script, None, "encoder of this setting")
            values = {**args, **shared,
                      "real_fp": o.value(real_fp[enc][0], script, real_fp[enc][1], f"real_fp in the {enc} branch")}
            settings[f"{dataset}/{enc}"] = {"command": match[0][2] if match else None, "values": values,
                                            **({"src": o.src("README.md", match[0][1])} if match else {})}
    return {"original": o.meta(), "settings": settings}


def edm_loop(o: Original, train: str, loops: dict) -> dict:
    """A click training script's defaults and its training loops' function defaults."""
    click, _ = click_options(o, train)
    out = {f"{train}:{k}": v for k, v in click.items()}
    for path, func in loops.items():
        out.update({f"{path}:{k}": v for k, v in function_defaults(o, path, func).items()})
    return out


def tdsm(o: Original) -> dict:
    noise_opts, noise_alias = click_options(o, "train_noise.py")
    cls_opts, cls_alias = click_options(o, "train_classifier.py")
    loop = function_defaults(o, "training/training_loop.py", "training_loop")
    cls_loop = function_defaults(o, "training/classifier_loop.py", "training_loop")
    loss = function_defaults(o, "training/loss.py", "__init__", cls="EDMNoiseLoss")
    gen, _ = click_options(o, "generate.py")
    tf32 = {}
    for path in ("training/training_loop.py", "training/classifier_loop.py"):
        for node in ast.walk(o.tree(path)):
            if isinstance(node, ast.Assign) and _name(node.targets[0]) == "torch.backends.cuda.matmul.allow_tf32":
                tf32[path] = o.value(_literal(node.value), path, node.lineno, "allow_tf32 set in the loop")
    noise_cmd = readme_commands(o, "README.md", "train_noise.py")[0]
    cls_cmd = readme_commands(o, "README.md", "train_classifier.py")[0]
    settings = {}
    for dataset in ("cifar10", "cifar100", "mnist"):
        n = overlay(o, noise_opts, noise_alias, noise_cmd[0], "README.md", noise_cmd[1])
        c = overlay(o, cls_opts, cls_alias, cls_cmd[0], "README.md", cls_cmd[1])
        if dataset == "mnist":
            # the README's commands train CIFAR-10; MNIST uses the code's MNIST network, one of --arch's choices
            choices = noise_opts["arch.choices"]
            assert "ddpmpp_mnist" in choices["value"], choices
            n["arch"] = o.value("ddpmpp_mnist", choices["src"].split("@")[0].split("/", 2)[2], None,
                                "the code's MNIST network (train_noise.py --arch choice)")
        values = {f"noise.{k}": v for k, v in n.items() if not k.endswith(".choices")}
        values.update({f"classifier.{k}": v for k, v in c.items() if not k.endswith(".choices")})
        values.update({f"loop.{k}": v for k, v in loop.items()})
        values.update({f"classifier_loop.{k}": v for k, v in cls_loop.items()})
        values.update({f"loss.{k}": v for k, v in loss.items()})
        values["generate.num_steps"] = gen["num_steps"]
        values.update({f"tf32.{Path(p).stem}": v for p, v in tf32.items()})
        settings[dataset] = {"command": [noise_cmd[2], cls_cmd[2]],
                             "src": [o.src("README.md", noise_cmd[1]), o.src("README.md", cls_cmd[1])],
                             "values": values}
    return {"original": o.meta(), "settings": settings}


def edm(o: Original) -> dict:
    values = edm_loop(o, "train.py", {"training/training_loop.py": "training_loop"})
    values.update({f"generate.py:{k}": v for k, v in click_options(o, "generate.py")[0].items()})
    return {"original": o.meta(), "settings": {"defaults": {"command": None, "values": values}}}


# ---------------------------------------------------------------------------------------------- main

def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dividemix", required=True, help="LiJunnan1992/DivideMix checkout")
    p.add_argument("--instancegm", required=True, help="arpit2412/InstanceGM checkout")
    p.add_argument("--sln", required=True, help="chenpf1025/SLN checkout")
    p.add_argument("--lra", required=True, help="puar-playground/LRA-diffusion checkout")
    p.add_argument("--tdsm", required=True, help="byeonghu-na/tdsm checkout")
    p.add_argument("--edm", required=True, help="NVlabs/edm checkout")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    jobs = {
        "dividemix": (dividemix, Original(a.dividemix, "LiJunnan1992/DivideMix")),
        "instancegm": (instancegm, Original(a.instancegm, "arpit2412/InstanceGM")),
        "sln": (sln, Original(a.sln, "chenpf1025/SLN")),
        "lra_diffusion": (lra, Original(a.lra, "puar-playground/LRA-diffusion")),
        "tdsm": (tdsm, Original(a.tdsm, "byeonghu-na/tdsm")),
        "edm": (edm, Original(a.edm, "NVlabs/edm")),
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (fn, original) in jobs.items():
        data = {"generator": "tests/golden/make_hyperparams.py", **fn(original)}
        (out / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"{name}.json: {len(data['settings'])} settings from {original.repo}@{original.commit[:7]}")


if __name__ == "__main__":
    main()

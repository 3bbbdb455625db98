"""Reading and writing label files: `PATH[:FIELD]` for .npy, .csv and .pt, plus the kit's own format
(`.npy` labels with a `.json` sidecar) and the published files' checksums (docs/noise.md §7, §9)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import atomic_write, atomic_write_json, expand_home

LABEL_SUFFIXES = (".npy", ".csv", ".pt", ".pth")

# sha256 of the published noisy-label files (docs/noise.md §9.1, §9.2)
PUBLISHED_SHA256 = {
    "lra-pmd/cifar10-1-0.35.npy": "f8216a408f6413c82b1aa6868e496a6ed4ad712d5876a110bd53bb779bd3c3d2",
    "lra-pmd/cifar10-1-0.35_A_0.3.npy": "a86ccc94aea4de62231015da474fc41652631f668873d7d8dc3a62c485420c29",
    "lra-pmd/cifar10-1-0.35_U_0.3.npy": "a432572a0840682dbb36248788ecb46c8fe1e808e2a4ef632d3db0b4af3303d7",
    "lra-pmd/cifar10-1-0.35_U_0.6.npy": "0922ba443aae18750e3beae420d61b583d545ff9064302e9f8bf7e3303ef9424",
    "lra-pmd/cifar10-1-0.40.npy": "3809a1e5861d8cda89bbac1b1eab1612956aff619bb7e5edc44e9659a8d77461",
    "lra-pmd/cifar10-1-0.45.npy": "c73a7cca3ae74c02aba697ba4e03042802cc93709d509263c539992468dcf5c2",
    "lra-pmd/cifar10-1-0.50.npy": "e651f81421e1e0a957b590b04f986311cd4dc0cfffa51b9f0190e7a8495caa07",
    "lra-pmd/cifar10-1-0.55.npy": "89da16d56b96822fe56381dd25ba2a0de77c5e6f2d5e972b47c15092f121af6d",
    "lra-pmd/cifar10-1-0.60.npy": "2df78679a833f68da4846dddcf3fb8d662f879fdb2af192135f363f8b613c84e",
    "lra-pmd/cifar10-1-0.65.npy": "0958eb912d2bea0ff82524f34a64986906945d9294f7c2377a99f1a1d13d4d9d",
    "lra-pmd/cifar10-1-0.70.npy": "ab274c1392fda8138d5b3e6f1e3786aac2b6cd52752cbfd289542a5ca85a6bdf",
    "lra-pmd/cifar100-1-0.35.npy": "cef3ccade9429ed0721b15f066cc5a5ef6141d299f6a9f0b1a0808e748dec848",
    "lra-pmd/cifar100-1-0.35_A_0.3.npy": "44239954ccc57b44ed4c65d6d7f4cadf75f32d351109378a2ac450f0f31ab32e",
    "lra-pmd/cifar100-1-0.35_U_0.3.npy": "55d24a3d90f9cda17c1ad67e28cdd165831dfe26f156f94256727936beffcd7a",
    "lra-pmd/cifar100-1-0.35_U_0.6.npy": "cea0f2dda64c7cbc8a14f93634a7c4080955da2fa6cd8a0f79ad4167b19057dc",
    "lra-pmd/cifar100-1-0.70.npy": "22026d55c7b6ee34bde26c7f6fe66f4cb5a38561dff25cf4bf39931c554ed8b6",
    "sln/cifar10/sym0.4.csv": "96c1bb492340f32681142d5cb2b0003c005227235e923b27ef86d2c11ab083d0",
    "sln/cifar10/asym0.4.csv": "eae3112b2e876f1ed375d2456b7d9b135b3b0f0c9e5c1a2d1b81417307d7d64c",
    "sln/cifar10/dependent0.4.csv": "e56e57cd7ec402ead6cd65f6f64ca436c7d3e5cf4bdf174eb8a1efa1daa90dad",
    "sln/cifar100/sym0.4.csv": "e074d1181c8b297dd1e888a70bc8a959c26769c08fb4fadff58460f901d5f5fc",
    "sln/cifar100/asym0.4.csv": "a1fbcb8217b5c7dc68cc1f101d2034c634fce5e2b9f6ac34daadc5ca9826bd3c",
    "sln/cifar100/dependent0.4.csv": "f5d3e4506550be0532344138d6f0fc82ac32472cf669acee43b8f190b8d260d7",
    # CIFAR-10N / CIFAR-100N human label sets, UCSC-REAL/cifar-10-100n data/ (docs/noise.md §7.1)
    "cifar-n/CIFAR-10_human.pt": "873e69c39cb9b5e97fb6bae2d60bb59b38a5cbc31d2b868f7903dcb2b9dd2310",
    "cifar-n/CIFAR-100_human.pt": "bd2d80409754d420292d622e15e25248ba21e37d27429efac49c8da723f44394",
}

# published files the kit may fetch itself (when online) into the noise root: the official repository's raw files
PUBLISHED_URLS = {
    "cifar-n/CIFAR-10_human.pt": "https://github.com/UCSC-REAL/cifar-10-100n/raw/main/data/CIFAR-10_human.pt",
    "cifar-n/CIFAR-100_human.pt": "https://github.com/UCSC-REAL/cifar-10-100n/raw/main/data/CIFAR-100_human.pt",
}

# the key under which a torch-saved label set carries the true labels of its images (the CIFAR-N release)
EMBEDDED_CLEAN_KEY = "clean_label"


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_label_spec(spec: str) -> tuple[Path, str | None]:
    """`PATH[:FIELD]` -> (path, field). A path that exists as given wins over a field split."""
    spec = str(spec)
    if os.path.exists(spec) or ":" not in spec:
        return Path(spec), None
    path, field = spec.rsplit(":", 1)
    return Path(path), (field or None)


def _as_int_labels(values, where: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise UserError(f"{where}: expected a 1-D label array, got shape {arr.shape}")
    if arr.dtype == bool or arr.dtype.kind in "USO":
        raise UserError(f"{where}: holds {arr.dtype} values, not integer class labels")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(np.mod(arr, 1) == 0):
            raise UserError(f"{where}: holds non-integer values")
    elif arr.dtype.kind not in "iu":
        raise UserError(f"{where}: holds {arr.dtype} values, not integer class labels")
    return arr.astype(np.int64)


def _read_csv(path: Path, field: str | None):
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise UserError(f"cannot read {path} as CSV: {e}") from None
    if df.empty and len(df.columns):  # a header and nothing under it: every column check below would mislead
        raise UserError(f"{path} has no rows: only the header {list(map(str, df.columns))}, no labels under it")
    if field is None:
        if df.shape[1] != 1:
            raise UserError(f"{path} has columns {list(df.columns)}; name one as {path}:COLUMN")
        field = df.columns[0]
    if field not in df.columns:
        raise UserError(f"{path} has no column {field!r}; columns are {list(df.columns)}")
    col = df[field]
    if col.dtype == bool or col.astype(str).isin(["True", "False"]).all():
        raise UserError(f"{path}:{field} holds True/False flags, not class labels "
                        "(an open-set flag column? read it with read_openset_flags)")
    return col.to_numpy()


def _read_pt(path: Path, field: str | None):
    # torch-saved label sets (CIFAR-10N/100N, InstanceGM's files) hold numpy arrays in a dict: the safe loader
    # admits those and nothing else, and never falls back to the unsafe one.
    from ..safeload import torch_load

    obj = torch_load(path, "a label file", numpy=True)
    if isinstance(obj, dict):
        if field is None:
            raise UserError(f"{path} holds keys {sorted(map(str, obj))}; name one as {path}:KEY")
        if field not in obj:
            raise UserError(f"{path} has no key {field!r}; keys are {sorted(map(str, obj))}")
        obj = obj[field]
    elif field is not None:
        raise UserError(f"{path} holds a single array, not a dict; drop ':{field}'")
    if hasattr(obj, "numpy"):
        obj = obj.numpy()
    return obj


def embedded_clean_labels(path) -> np.ndarray | None:
    """The true labels a `.pt` label set carries under `clean_label` (CIFAR-N), or None when it has none."""
    path = Path(path)
    if path.suffix.lower() not in (".pt", ".pth"):
        return None
    from ..safeload import torch_load

    obj = torch_load(path, "a label file", numpy=True)
    if not isinstance(obj, dict) or EMBEDDED_CLEAN_KEY not in obj:
        return None
    values = obj[EMBEDDED_CLEAN_KEY]
    return _as_int_labels(values.numpy() if hasattr(values, "numpy") else values, f"{path}:{EMBEDDED_CLEAN_KEY}")


def check_embedded_clean(path, labels: np.ndarray) -> None:
    """A label set that carries its images' true labels must agree with the dataset's train labels, image by
    image: otherwise its noisy labels belong to other images (another order, or another dataset's file)."""
    clean = embedded_clean_labels(path)
    if clean is None:
        return
    labels = np.asarray(labels)
    if len(clean) != len(labels):
        raise UserError(f"{path}: its {EMBEDDED_CLEAN_KEY} has {len(clean)} labels, the dataset {len(labels)} train "
                        "images: the wrong file for this dataset")
    wrong = np.flatnonzero(clean != labels)
    if wrong.size:
        raise UserError(f"{path}: its {EMBEDDED_CLEAN_KEY} differs from the dataset's train labels at {wrong.size} "
                        f"of {len(labels)} images (first at {wrong[0]}): the images are not in torchvision order, "
                        "or the file is not this dataset's")


def read_labels(spec: str, num_classes: int | None = None, expected_length: int | None = None) -> np.ndarray:
    """Read integer labels from `PATH[:FIELD]` (.npy; .csv with FIELD = column; .pt with FIELD = key)."""
    path, field = split_label_spec(spec)
    if not path.is_file():
        raise UserError(f"label file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if field is not None:
            raise UserError(f"{path} is a plain array; drop ':{field}'")
        try:
            raw = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot read {path} as .npy: {e}") from None
    elif suffix == ".csv":
        raw = _read_csv(path, field)
    elif suffix in (".pt", ".pth"):
        raw = _read_pt(path, field)
    else:
        raise UserError(f"unsupported label file type {suffix!r} for {path}; use .npy, .csv or .pt")
    labels = _as_int_labels(raw, str(spec))
    if labels.size == 0:
        raise UserError(f"{spec}: holds no labels")
    if expected_length is not None and len(labels) != expected_length:
        raise UserError(f"{spec}: has {len(labels)} labels, expected {expected_length}")
    if labels.size and labels.min() < 0:
        raise UserError(f"{spec}: negative label {labels.min()}")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        raise UserError(f"{spec}: label {labels.max()} is outside [0, {num_classes})")
    return labels


def read_openset_flags(spec: str) -> np.ndarray:
    """Boolean 'image replaced' flags of an open-set CSV (`True`/`False` strings, or 0/1)."""
    import pandas as pd

    path, field = split_label_spec(spec)
    df = pd.read_csv(path)
    col = df[field or "label_noisy"]
    if col.dtype == bool:
        return col.to_numpy()
    text = col.astype(str).str.strip()
    if not text.isin(["True", "False", "0", "1"]).all():
        raise UserError(f"{spec}: expected True/False flags")
    return text.isin(["True", "1"]).to_numpy()


def save_labels(path, labels: np.ndarray, meta: dict | None = None) -> None:
    """Kit format: int64 `.npy` plus a `.json` sidecar with the generator's meta (both written atomically).

    The sidecar is written first, so a present `.npy` always has its sidecar beside it."""
    path = Path(path)
    if path.suffix != ".npy":
        raise UserError(f"output must be a .npy file, got {path}")
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    sidecar = path.with_suffix(".json")
    had_sidecar = sidecar.exists()
    if meta is not None:
        atomic_write_json(sidecar, meta)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, labels)

    try:
        atomic_write(path, write)
    except BaseException:  # a full disk: leave no sidecar without its labels
        if meta is not None and not had_sidecar:
            sidecar.unlink(missing_ok=True)
        raise


def write_sln_csv(path, clean: np.ndarray, noisy: np.ndarray) -> None:
    """Interchange with the SLN format: header `label,label_noisy`, one row per sample."""
    import pandas as pd

    if len(clean) != len(noisy):
        raise UserError(f"clean and noisy labels differ in length: {len(clean)} vs {len(noisy)}")
    df = pd.DataFrame({"label": np.asarray(clean, np.int64), "label_noisy": np.asarray(noisy, np.int64)})
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def verify_published(path, name: str) -> str:
    """Check a published file against its pinned sha256; returns the digest."""
    if name not in PUBLISHED_SHA256:
        raise UserError(f"no pinned checksum for {name!r}")
    digest = sha256_file(path)
    if digest != PUBLISHED_SHA256[name]:
        raise UserError(f"{path} does not match the published {name} (sha256 {digest[:12]}...)")
    return digest


def resolve_noise_file(relative: str, noise_root=None, data_root=None, sha256: str | None = None,
                       download: bool | None = None) -> Path:
    """Find a published label file (path relative to a noise root such as `lra-pmd/cifar10-1-0.35.npy`) and check
    its checksum. Looks in noise_root, $NLKIT_NOISE_ROOT, <data_root>/noise and <default data root>/noise. A
    relative root is taken from the project folder, and the path comes back in the same relative form (what a
    run records names no folder of this machine); open it through `nlkit.io.project_path`. A file the kit knows
    a download address for (PUBLISHED_URLS) is fetched into the first of those roots when it is missing, unless
    `download` is False or (download=None) NLKIT_OFFLINE=1."""
    from ..errors import DataMissingError
    from ..io import project_path

    given = [Path(noise_root)] if noise_root else []
    if os.environ.get("NLKIT_NOISE_ROOT"):
        given.append(Path(os.environ["NLKIT_NOISE_ROOT"]))
    given += [Path(data_root) / "noise"] if data_root else []
    given.append(Path(os.environ.get("NLKIT_DATA_ROOT") or "data") / "noise")
    for root in given:
        path = project_path(root / relative)
        if path.is_file():
            if sha256 and sha256_file(path) != sha256:
                raise UserError(f"{path} is not the published file (sha256 differs from the params file's)")
            return path if expand_home(root).is_absolute() else root / relative
    candidates = [project_path(root) for root in given]
    missing = (f"label file {relative} not found (looked in {', '.join(str(c) for c in candidates)}); "
               "pass --noise-root to the folder holding the published label files (lra-pmd/, sln/, cifar-n/)")
    if relative in PUBLISHED_URLS:
        from ..data.download import downloads_allowed, why_no_download

        if not downloads_allowed(download):
            raise DataMissingError(f"{missing}; not downloaded: {why_no_download(download)}")
        download_published(relative, project_path(given[0]), missing)
        return given[0] / relative
    raise DataMissingError(missing)


def download_published(relative: str, root: Path, not_found: str = "") -> Path:
    """Fetch a published label file from its official URL into `root/relative`, checked against its pinned sha256
    before it is moved into place (a failed or altered download leaves nothing behind)."""
    import urllib.request

    from ..data.download import run_download
    from ..errors import DataMissingError

    target = Path(root) / relative
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        run_download(lambda: urllib.request.urlretrieve(PUBLISHED_URLS[relative], tmp),
                     not_found or f"label file {relative} not found")
        digest = sha256_file(tmp)
        if digest != PUBLISHED_SHA256[relative]:
            raise DataMissingError(f"the download of {PUBLISHED_URLS[relative]} is not the published {relative} "
                                   f"(sha256 {digest[:12]}...); nothing was saved")

    atomic_write(target, write)
    return target

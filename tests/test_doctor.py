"""`nlkit doctor`: the environment report and the dataset lookup by file name."""

import json
import pickle

import pytest
import torch

from nlkit.cli import main
from nlkit.data.locate import locate_dataset
from nlkit.doctor import format_report, report
from nlkit.errors import UserError


def _fake_cifar10_pickles(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({}))


def test_locate_finds_each_layout_by_name_only(tmp_path):
    assert locate_dataset("cifar10", tmp_path) is None
    assert locate_dataset("mnist", tmp_path / "absent") is None
    assert locate_dataset("digits", tmp_path) == "bundled with scikit-learn"
    _fake_cifar10_pickles(tmp_path)  # empty pickles: the lookup must not read them
    assert "pickles" in locate_dataset("cifar10", tmp_path)
    (tmp_path / "cifar100-jpeg.tar.gz").write_bytes(b"")
    assert "archive" in locate_dataset("cifar100", tmp_path)
    tree = tmp_path / "mnist-png" / "train" / "3"
    tree.mkdir(parents=True)
    assert "image folders" in locate_dataset("mnist", tmp_path)
    (tmp_path / "animal10n" / "training").mkdir(parents=True)
    assert locate_dataset("animal10n", tmp_path) is None  # testing/ is missing too
    (tmp_path / "animal10n" / "testing").mkdir()
    assert locate_dataset("animal10n", tmp_path) == str(tmp_path / "animal10n")
    with pytest.raises(UserError):
        locate_dataset("imagenet", tmp_path)


def test_report_lists_roots_datasets_noise_files_and_limits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NLKIT_DATA_ROOT", raising=False)
    root = tmp_path / "mine"
    _fake_cifar10_pickles(root)
    (root / "noise" / "sln" / "cifar10").mkdir(parents=True)
    (root / "noise" / "sln" / "cifar10" / "sym0.4.csv").write_text("label_noisy\n1\n")
    rep = report(root)
    assert [r["origin"] for r in rep["data_roots"]] == ["--data-root", "./data"]
    mine = rep["data_roots"][0]
    assert list(mine["datasets"]) == ["cifar10"] and mine["noise"] == {"sln/cifar10": ["sym0.4.csv"]}
    assert rep["data_roots"][1]["exists"] is False
    assert any("cifar100" in line for line in rep["cannot"])
    assert not any("published label files" in line for line in rep["cannot"])
    assert rep["torch"]["cuda_available"] in (True, False)
    if not rep["torch"]["cuda_available"]:
        assert any("no CUDA GPU" in line for line in rep["cannot"])
    text = format_report(rep)
    assert "cifar10 [" in text and "noise/sln/cifar10: sym0.4.csv" in text and "None" not in text
    assert len(text.splitlines()) <= 30  # one screen


def test_env_root_and_cli_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "envroot" / "MNIST" / "raw").mkdir(parents=True)
    monkeypatch.setenv("NLKIT_DATA_ROOT", str(tmp_path / "envroot"))
    assert main(["doctor", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["data_roots"][0]["origin"] == "$NLKIT_DATA_ROOT"
    assert rep["data_roots"][0]["datasets"] == {}  # the idx files themselves are missing
    assert any("no published label files" in line for line in rep["cannot"])
    assert main(["doctor"]) == 0
    assert "data roots:" in capsys.readouterr().out


def test_a_home_folder_of_no_user_is_one_line(capsys):
    """`~nosuchuser/x` made pathlib raise RuntimeError: a traceback."""
    from nlkit.cli import main

    assert main(["doctor", "--data-root", "~nosuchuser-of-nlkit/x"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "~nosuchuser-of-nlkit" in err


@pytest.mark.parametrize("flags, cap, isa, native", [
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, None, "AMX-BF16", True),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "AVX512_CORE_BF16", "AVX512-BF16", True),
    ({"avx2", "avx512f", "avx512_bf16"}, None, "AVX512-BF16", True),
    ({"avx2", "avx512f"}, None, "AVX-512", False),
    ({"avx2"}, None, "AVX2", False),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "AVX2", "AVX2", False),   # oneDNN capped: no bf16 kernels
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "avx512_core", "AVX-512", False),
])
def test_cpu_isa_reads_flags_and_respects_the_onednn_cap(monkeypatch, flags, cap, isa, native):
    """bf16 'auto' turns on only where oneDNN has native bf16 kernels; ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16
    (a CPU without native bf16, simulated) keeps the kit in fp32 and the doctor says what to expect."""
    import nlkit.hardware as hw
    from nlkit.doctor import cpu_expectation, cpu_report

    monkeypatch.setattr(hw, "_cpu_flags", lambda: set(flags))
    hw._cpu_isa.cache_clear()
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    try:
        got = hw.cpu_isa()
        assert (got["isa"], got["native_bf16"]) == (isa, native)
        assert hw.use_bf16("auto", "cpu") is native and hw.use_bf16(True, "cpu") and not hw.use_bf16(False, "cpu")
        # channels_last 'auto' on the CPU follows bf16; True is on everywhere; fp32 runs keep NCHW under 'auto'
        assert hw.use_channels_last("auto", "cpu", "auto") is native
        assert hw.use_channels_last("auto", "cpu", False) is False and hw.use_channels_last(True, "cpu")
        text = cpu_expectation(cpu_report())
        assert ("bf16 autocast + channels_last" in text) is native
        assert ("fp32 + channels_last" in text and "slower than a CPU with AMX" in text) is (not native)
        with pytest.raises(ValueError):
            hw.use_bf16("yes", "cpu")
    finally:
        hw._cpu_isa.cache_clear()


def test_autocast_follows_the_switch_on_the_cpu(monkeypatch):
    import nlkit.hardware as hw
    from nlkit.train import autocast_for

    monkeypatch.setattr(hw, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    hw._cpu_isa.cache_clear()
    layer = torch.nn.Linear(4, 4)
    try:
        for cap, switch, dtype in ((None, "auto", torch.bfloat16), ("AVX2", "auto", torch.float32),
                                   ("AVX2", True, torch.bfloat16), (None, False, torch.float32)):
            if cap:
                monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
            else:
                monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
            with autocast_for("cpu", switch):
                assert layer(torch.ones(2, 4)).dtype == dtype, (cap, switch)
    finally:
        hw._cpu_isa.cache_clear()

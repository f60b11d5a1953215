"""tasks/tracking/provenance.py: what a parent run records about the machine, and what differs."""

import os
import platform

from tasks.tracking.provenance import environment, environment_diff

RECORDED = {
    "versions.python": "3.11.14",
    "versions.tensorflow": "2.21.0",
    "env.cpu.model": "AMD EPYC",
    "env.cpu.isa": "avx avx2 avx512f fma sse2",
    "env.onednn": "on",
    "env.var.XLA_FLAGS": "unset",
    "git.commit": "abc",  # code, not environment: provenance_warnings says that
}


def test_the_same_environment_differs_in_nothing():
    assert environment_diff(RECORDED, dict(RECORDED, **{"git.commit": "def"})) == []


def test_the_diff_names_a_changed_version_and_setting_with_both_values():
    now = dict(RECORDED)
    now["versions.tensorflow"] = "2.22.0"
    now["env.var.XLA_FLAGS"] = "--xla_cpu_max_isa=AVX2"
    now["env.blas"] = "openblas 0.3.31"  # not recorded then

    assert environment_diff(RECORDED, now) == [
        "env.blas: not recorded, now openblas 0.3.31",
        "env.var.XLA_FLAGS: recorded unset, now --xla_cpu_max_isa=AVX2",
        "versions.tensorflow: recorded 2.21.0, now 2.22.0",
    ]


def test_the_diff_lists_the_instruction_sets_only_one_machine_has():
    now = dict(RECORDED, **{"env.cpu.isa": "avx avx2 fma sse2 amx_tile"})
    assert environment_diff(RECORDED, now) == [
        "env.cpu.isa: recorded only avx512f; now only amx_tile"
    ]


def test_a_run_recorded_before_the_environment_was_compares_versions_only():
    old = {"versions.tensorflow": "2.20.0", "git.commit": "abc"}
    lines = environment_diff(old, RECORDED)
    assert lines == [
        "the recorded run has no env.* tags (made before the machine was recorded)",
        "versions.python: not recorded, now 3.11.14",
        "versions.tensorflow: recorded 2.20.0, now 2.21.0",
    ]


def test_environment_reads_this_machine(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    env = environment()
    assert env["env.cpu.count"] == str(os.cpu_count())
    assert env["env.cpu.arch"] == platform.machine()
    assert env["env.var.OMP_NUM_THREADS"] == "1"
    assert env["env.var.TF_XLA_FLAGS"] == "unset"
    if os.path.exists("/proc/cpuinfo") and platform.machine() == "x86_64":
        assert "sse2" in env["env.cpu.isa"].split()  # every x86-64 CPU has it
        assert "hypervisor" not in env["env.cpu.isa"]  # a feature, not an instruction set

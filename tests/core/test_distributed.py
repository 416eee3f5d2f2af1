"""Training on several processes: one owner per run folder, Lightning DDP on two CPU processes, bad hardware flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from astrobench.core import distributed as dist
from astrobench.core.io import ConfigError, write_json_atomic

RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS", dist.RUN_DIR_ENV)


@pytest.fixture
def clean_env(monkeypatch):
    for var in RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    yield monkeypatch
    dist.set_owner_run_dir(None)


def test_rank_from_each_launcher(clean_env):
    assert dist.is_global_zero()
    clean_env.setenv("LOCAL_RANK", "1")  # Lightning's DDP child
    assert not dist.is_global_zero()
    clean_env.setenv("RANK", "0")  # torchrun says which global rank: it wins
    assert dist.is_global_zero()
    clean_env.delenv("RANK")
    clean_env.setenv("LOCAL_RANK", "0")
    clean_env.setenv("NODE_RANK", "1")  # first process of the second node
    assert not dist.is_global_zero()
    clean_env.delenv("NODE_RANK")
    clean_env.setenv("SLURM_PROCID", "3")
    assert dist.is_global_zero()  # a SLURM job of one task: its PROCID says nothing about DDP
    clean_env.setenv("SLURM_NTASKS", "4")
    assert dist.global_rank() == 3


def test_a_non_owning_rank_never_writes_into_the_owners_folder(clean_env, tmp_path):
    owner = tmp_path / "run"
    owner.mkdir()
    dist.set_owner_run_dir(owner)
    write_json_atomic(owner / "checkpoints" / "x.json", {"a": 1})
    assert not (owner / "checkpoints" / "x.json").exists()
    assert list(owner.rglob("*.tmp")) == []
    write_json_atomic(tmp_path / "elsewhere.json", {"a": 1})  # its own scratch: written
    assert json.loads((tmp_path / "elsewhere.json").read_text()) == {"a": 1}


def test_a_rank_waits_for_the_owner_then_gives_up_in_one_line(clean_env, tmp_path):
    clean_env.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="needs --name"):
        dist.find_owner_run_dir(tmp_path, "rings", None, None)
    with pytest.raises(ConfigError, match=r"did not appear within 0 s"):
        dist.find_owner_run_dir(tmp_path, "rings", "t", None, wait_s=0.3)
    (tmp_path / "rings" / "t").mkdir(parents=True)
    (tmp_path / "rings" / "t" / "config.json").write_text("{}")
    assert dist.find_owner_run_dir(tmp_path, "rings", "t", None) == tmp_path / "rings" / "t"
    clean_env.setenv(dist.RUN_DIR_ENV, str(tmp_path / "rings" / "t"))  # what the owner announced wins
    assert dist.find_owner_run_dir(tmp_path, "other", "u", None) == tmp_path / "rings" / "t"


def _cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """The command line in a fresh process, as a user types it (Lightning's DDP launcher re-runs sys.argv)."""
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARS and k not in ("MASTER_ADDR", "MASTER_PORT",
                                                                                     "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"  # two ranks on two cores
    return subprocess.run([sys.executable, "-m", "astrobench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _keys(tree, prefix=""):
    if isinstance(tree, dict):
        return {k for key, value in tree.items() for k in _keys(value, f"{prefix}{key}.")} | {prefix}
    return {prefix}


@pytest.mark.parametrize("bad, message", [
    (["--devices", "64", "--accelerator", "cpu"], "--devices 64"),
    (["--strategy", "nonsense"], "--strategy 'nonsense'"),
    (["--num-nodes", "0"], "--num-nodes"),
])
def test_bad_hardware_flags_are_one_line_and_leave_no_folder(tmp_path, bad, message, capsys):
    from astrobench.cli import main

    assert main(["run", "rings", "--set", "size='smoke'", "--out", str(tmp_path), "--name", "x", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "rings").exists()


@pytest.fixture(scope="module")
def ddp_rings(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    done = _cli("run", "rings", "--set", "size='smoke'", "--seed", "3", "--devices", "2", "--accelerator", "cpu",
                "--strategy", "ddp", "--out", str(out), "--name", "t1", "--no-progress")
    return out / "rings" / "t1", done


def test_ddp_run_has_one_owner_and_the_keys_of_a_one_process_run(ddp_rings, smoke_run):
    run_dir, done = ddp_rings
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["t1"]  # the second rank made no folder of its own
    ddp, single = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, smoke_run))
    assert _keys(ddp["results"]) == _keys(single["results"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["trainer"]["strategy"] == "ddp" and config["trainer"]["devices"] == 2
    assert list(run_dir.rglob("*.tmp")) == []


def test_ddp_run_resumes(ddp_rings):
    run_dir, done = ddp_rings
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir / "metrics.json").unlink()
    retrain = sorted(run_dir.glob("checkpoints/*/model.pt"))[-1]
    retrain.unlink()
    again = _cli("run", "--resume", str(run_dir), "--no-progress")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (run_dir / "metrics.json").exists() and retrain.exists()


def test_ddp_run_of_a_one_dimensional_task_matches_a_one_process_run(tmp_path):
    from astrobench.runner import run

    small = {"size": "smoke", "generate_methods": ["vae"], "conditional_methods": ["pca_gauss"]}  # one network
    done = _cli("run", "spectra", *(a for k, v in small.items() for a in ("--set", f"{k}={v!r}")), "--devices", "2",
                "--accelerator", "cpu", "--strategy", "ddp", "--out", str(tmp_path), "--name", "ddp", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [str(tmp_path / "spectra" / "ddp")]  # said once, by the owner
    single = run("spectra", out=tmp_path, name="one", overrides=small)
    ddp, one = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "spectra" / "ddp", single))
    assert _keys(ddp["results"]) == _keys(one["results"])


def test_ddp_spawn_run_finishes_and_keeps_the_loss_history(tmp_path):
    """ddp_spawn pickles the data loaders into new processes: a loader's torch.Generator used to fail there with
    "unable to resize file ... Invalid argument" (torch's file-descriptor sharing)."""
    done = _cli("run", "camels", "--set", "size='smoke'", "--set", "fields=['mtot']", "--devices", "2",
                "--accelerator", "cpu", "--strategy", "ddp_spawn", "--out", str(tmp_path), "--name", "s",
                "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = tmp_path / "camels" / "s"
    assert (run_dir / "metrics.json").exists()
    histories = list(run_dir.glob("checkpoints/*/history.json"))
    assert histories and all(json.loads(h.read_text())["epoch"] == [0] for h in histories)

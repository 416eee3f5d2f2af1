import json
import os

import pytest

from astrobench.cli import main
from astrobench.runner import parse_set


def test_list_names_rings(capsys):
    assert main(["list"]) == 0
    assert "rings" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["list", "simulate", "run", "predict", "report", "demo"])
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_unknown_task_is_one_line_exit_2(capsys):
    assert main(["run", "nosuchtask"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown task 'nosuchtask'" in err


def test_unknown_option_is_one_line_exit_2(tmp_path, capsys):
    assert main(["run", "rings", "--out", str(tmp_path), "--set", "no_such_option=3"]) == 2
    assert "unknown option 'no_such_option'" in capsys.readouterr().err
    assert main(["run", "rings", "--out", str(tmp_path), "--set", "max_epochs=lots"]) == 2
    assert "expects an integer" in capsys.readouterr().err


def test_debug_shows_traceback():
    from astrobench.core.io import ConfigError

    with pytest.raises(ConfigError):
        main(["run", "nosuchtask", "--debug"])


def test_set_values_are_literals_never_code():
    assert parse_set(["a=3", "b=0.5", "c=[1, 2]", "d=True", "e=hello"]) == {
        "a": 3, "b": 0.5, "c": [1, 2], "d": True, "e": "hello"}
    evil = "__import__('os').system('echo hacked')"
    assert parse_set([f"x={evil}"]) == {"x": evil}


def test_missing_data_path_exit_2(tmp_path, capsys):
    assert main(["run", "rings", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "nope: not found" in capsys.readouterr().err


def test_existing_run_folder_is_never_overwritten(smoke_run, capsys):
    before = (smoke_run / "metrics.json").read_text()
    code = main(["run", "rings", "--out", str(smoke_run.parent.parent), "--name", smoke_run.name,
                 "--set", "size='smoke'"])
    assert code == 2 and "run folder exists" in capsys.readouterr().err
    assert (smoke_run / "metrics.json").read_text() == before


def test_report_over_runs(smoke_run, tmp_path):
    out = tmp_path / "r.html"
    assert main(["report", str(smoke_run), str(smoke_run), "-o", str(out)]) == 0
    page = out.read_text()
    assert page.count("<h2>rings") == 2 and "data:image/png;base64," in page
    assert "Runs side by side" in page  # two runs of one task are compared


def test_report_on_something_that_is_not_a_run_is_one_line(tmp_path, capsys):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text('{"accuracy": 0.9}')  # another program's metrics.json
    assert main(["report", str(tmp_path / "other"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "not an astrobench metrics.json" in err and len(err.strip().splitlines()) == 1
    assert main(["report", str(tmp_path / "nowhere"), "-o", str(tmp_path / "r.html")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_report_of_unfinished_run_is_user_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")]) == 2
    assert "not a finished run folder" in capsys.readouterr().err


def test_demo_runs_its_tasks_and_writes_one_index(tmp_path):
    from astrobench.runner import demo

    # two fast tasks: every task's own smoke run is tested in tests/tasks (all nine here took 135 s of the suite)
    index = demo(tmp_path, seed=0, progress=False, size="smoke", tasks=["sn_lasso", "cluster_mass"])
    page = index.read_text()
    for name in ("sn_lasso", "cluster_mass"):
        (run_dir,) = (tmp_path / name).glob("demo-*")
        assert f'href="{name}/{run_dir.name}/report.html"' in page  # a link that works from the index's folder
        assert (run_dir / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["cluster_mass", "sn_lasso"]


def test_simulate_writes_the_real_format_and_rejects_unknown_options(tmp_path, capsys):
    assert main(["simulate", "rings", "--out", str(tmp_path / "r"), "--n", "4", "--set", "mode='n_ring'"]) == 0
    assert (tmp_path / "r" / "labels.txt").read_text().count("\n") == 4
    assert main(["simulate", "rings", "--out", str(tmp_path / "s"), "--n", "4", "--set", "colour=3"]) == 2
    assert "unknown option 'colour'" in capsys.readouterr().err
    assert main(["simulate", "rings", "--out", str(tmp_path / "t"), "--n", "4", "--format", "jpg"]) == 2
    assert "unknown format 'jpg'" in capsys.readouterr().err


def test_bad_hardware_and_option_values_are_one_line(tmp_path, capsys):
    assert main(["run", "rings", "--out", str(tmp_path), "--devices", "abc"]) == 2
    assert "--devices expects" in capsys.readouterr().err
    assert main(["run", "rings", "--out", str(tmp_path), "--set", "n_classify=[10, 5]"]) == 2
    assert "three positive integers" in capsys.readouterr().err
    assert main(["run", "rings", "--out", str(tmp_path), "--set", "data_split=[0.5, 0.6, 0.6]"]) == 2
    assert main(["simulate", "rings", "--out", str(tmp_path / "x"), "--set", "image_size=28.5"]) == 2
    assert "expects an integer" in capsys.readouterr().err
    assert not (tmp_path / "rings").exists()  # no orphan run folders


def test_broken_run_folders_are_one_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("[1, 2]")
    (tmp_path / "run" / "metrics.json").write_text('"nope"')
    assert main(["predict", str(tmp_path / "run"), "--data", str(tmp_path)]) == 2
    assert "not an astrobench run configuration" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "run"), "-o", str(tmp_path / "r.html")]) == 2
    assert "not an astrobench metrics.json" in capsys.readouterr().err


def test_a_run_that_fails_on_its_data_leaves_nothing_and_the_name_stays_free(tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "labels.txt").write_text("0\n1\n")  # labels for images that are not there
    out = tmp_path / "runs"
    code = main(["run", "rings", "--data", str(broken), "--out", str(out), "--name", "r01", "--set", "size='smoke'"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(broken) in err
    assert not out.exists()  # the run folder and the folders made for it are gone
    from astrobench.runner import planned_run_dir

    assert planned_run_dir(out, "rings", "r01") == out / "rings" / "r01"  # free for the corrected command


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "-rf", ""])
def test_run_names_are_plain_folder_names(tmp_path, capsys, name):
    assert main(["run", "rings", "--out", str(tmp_path / "runs"), "--name", name, "--set", "size='smoke'"]) == 2
    assert "a run name is one plain folder name" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


def test_out_that_is_a_file_or_read_only_is_one_line(tmp_path, capsys):
    import os

    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "below"):
        assert main(["run", "rings", "--out", str(out), "--set", "size='smoke'"]) == 2
        assert "is a file, not a folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        assert main(["run", "rings", "--out", str(tmp_path / "ro"), "--set", "size='smoke'"]) == 2
        assert "no permission to write" in capsys.readouterr().err


@pytest.mark.parametrize("error, status, words", [
    (EOFError("Ran out of input"), 2, "a file ended before its data did"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 2, "UnicodeDecodeError"),
    (FileNotFoundError(2, "No such file or directory", "/x/frame.png"), 2, "/x/frame.png: No such file"),
    (MemoryError(), 2, "out of memory"),
    (RuntimeError("something\nunexpected"), 1, "run with --debug for the traceback"),
])
def test_any_escaping_exception_is_one_line_never_aborted(tmp_path, capsys, monkeypatch, error, status, words):
    import astrobench.runner

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(astrobench.runner, "run", fail)
    assert main(["run", "rings", "--out", str(tmp_path)]) == status
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err and "Aborted" not in err
    with pytest.raises(type(error)):
        main(["run", "rings", "--out", str(tmp_path), "--debug"])


def test_a_zero_byte_map_file_names_the_file(tmp_path, capsys):
    from astrobench.tasks.camels.simulate import simulate

    simulate(tmp_path / "cmd", n_sims=3, map_size=16, seed=0, suites=("tng",), n_jobs=1)
    maps = next((tmp_path / "cmd").glob("Maps_Mtot_*.npy"))
    maps.write_bytes(b"")
    code = main(["run", "camels", "--data", str(tmp_path / "cmd"), "--out", str(tmp_path / "runs"),
                 "--set", "size='smoke'"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and f"{maps}: is empty" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**40)])
def test_seeds_outside_what_the_generators_take_are_one_line(tmp_path, capsys, seed):
    assert main(["run", "rings", "--out", str(tmp_path), "--seed", seed, "--set", "size='smoke'"]) == 2
    assert "--seed must be between 0 and 4294967295" in capsys.readouterr().err
    assert main(["simulate", "rings", "--out", str(tmp_path / "sim"), "--seed", seed, "--n", "2"]) == 2
    assert list(tmp_path.iterdir()) == []


def test_sizes_that_cannot_fit_in_memory_are_refused_with_the_estimate(tmp_path, capsys):
    assert main(["simulate", "spectra", "--out", str(tmp_path / "s"), "--n", str(10**12)]) == 2
    err = capsys.readouterr().err
    assert "--n 1000000000000 (galaxies (spectra)) needs about" in err and "GiB of memory" in err
    assert main(["run", "sn_lasso", "--out", str(tmp_path), "--set", "n_noise=100000000000"]) == 2
    assert "n_sne=450 with n_noise=100000000000 needs about" in capsys.readouterr().err
    assert main(["run", "rings", "--out", str(tmp_path), "--set", f"n_generate_train={10**12}"]) == 2
    assert f"n_generate_train={10**12} needs about" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_report_onto_a_folder_is_one_line(smoke_run, tmp_path, capsys):
    assert main(["report", str(smoke_run), "-o", str(tmp_path)]) == 2
    assert "is a folder; name the HTML file" in capsys.readouterr().err


def test_resume_refuses_new_settings_another_task_and_a_finished_run(smoke_run, capsys):
    assert main(["run", "--resume", str(smoke_run), "--seed", "4"]) == 2
    assert "drop --data, --quick, --name, --seed and --set" in capsys.readouterr().err
    assert main(["run", "sn_lasso", "--resume", str(smoke_run)]) == 2
    assert "is a run of 'rings', not 'sn_lasso'" in capsys.readouterr().err
    assert main(["run", "--resume", str(smoke_run)]) == 2  # it has metrics.json
    assert "is finished" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert "name a task to run" in capsys.readouterr().err


def test_threads_are_recorded_applied_and_restored(tmp_path, capsys):
    import torch

    from astrobench.core.threads import limited_threads
    from astrobench.runner import Execution, run

    before = torch.get_num_threads()
    with limited_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    run_dir = run("sn_lasso", out=tmp_path, name="one", overrides={"size": "smoke"}, execution=Execution(threads=1))
    assert json.loads((run_dir / "config.json").read_text())["threads"] == 1
    assert "--threads 1" in json.loads((run_dir / "metrics.json").read_text())["command"]
    assert torch.get_num_threads() == before
    assert main(["run", "sn_lasso", "--out", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads must be a whole number of at least 1" in capsys.readouterr().err


def test_demo_refuses_unknown_tasks_in_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--tasks", "rings,nosuch"]) == 2
    err = capsys.readouterr().err
    assert "--tasks: unknown task nosuch" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_default_threads_leave_out_the_cores_other_work_is_using(monkeypatch):
    from astrobench.core import threads
    from astrobench.runner import Execution

    assert threads.free_threads(2, 0.05) == 2 and threads.free_threads(2, 1.0) == 1 and threads.free_threads(2, 3) == 1
    assert threads.free_threads(8, 2.4) == 6
    assert 0 <= threads.busy_cores(0.05) <= (os.cpu_count() or 1)
    monkeypatch.setattr(threads, "busy_cores", lambda sample_s=0.5: 1.0)
    assert Execution().thread_count() == max(1, __import__("torch").get_num_threads() - 1)
    assert Execution(threads=2).thread_count() == 2  # a chosen count is kept

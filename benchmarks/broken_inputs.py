"""A battery of broken inputs, drawn at random: does every one end cleanly?

    python benchmarks/broken_inputs.py [--seed 2026]

Each case is an `astrobench run TASK --data BROKEN --set size='smoke'` (or a run with a bad flag or option), called
in this process. Clean means: exit code 2, one line on stderr that names the broken file (or the bad flag or
option), no traceback, and no run folder left behind. The corruptions are drawn from ``--seed`` (truncation
offsets, which cell gets which bad token, which column is dropped or renamed, which frame is cut), so they are not
the cases of tests/tasks/test_reader_fuzz.py. Writes benchmarks/results/broken_inputs.json: counts per kind and
every case that did not end cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BAD_TOKENS = ["abc", "1.2.3", "--", "NaNx", "1e", "0x1F", "\u2212", "\x00"]  # U+2212: a minus sign from a PDF


def _clean_files(tmp: Path) -> dict[str, Path]:
    from astrobench.tasks.allsky.simulate import simulate as allsky
    from astrobench.tasks.camels.simulate import simulate as camels
    from astrobench.tasks.cluster_mass.simulate import simulate as clusters
    from astrobench.tasks.photoz.simulate import simulate as photoz
    from astrobench.tasks.sn_lasso.simulate import simulate as sn

    camels(tmp / "camels", n_sims=6, map_size=16, seed=0, n_jobs=1)
    return {"sn_lasso": sn(tmp / "sn.csv", n=80, seed=1),
            "photoz": photoz(tmp / "photoz.cat", n=300, seed=2, n_templates=50, n_jobs=1),
            "cluster_mass": clusters(tmp / "clusters", n=12, n_projections=2, image_size=16, n_jobs=1),
            "allsky": allsky(tmp / "allsky", n=12, seed=3, format="png", n_jobs=1, frames_per_camera=12,
                             progress=False).parent,
            "camels": tmp / "camels"}


def _cut_inside_a_value(raw: bytes, rng) -> bytes:
    header_end = raw.index(b"\n") + 1
    while True:
        cut = int(rng.integers(header_end + 1, len(raw) - 1))
        if raw[cut - 1:cut] not in (b"\n", b"\r", b",", b" ") and raw[cut:cut + 1] not in (b"\n", b"\r"):
            return raw[:cut]


def _table_cases(name: str, clean: Path, rng, sep: str | None) -> list[tuple[str, str, bytes]]:
    """(kind, description, broken bytes) for a text table with separator ``sep`` (None: whitespace)."""
    raw = clean.read_bytes()
    lines = clean.read_text().splitlines()
    header = lines[0].lstrip("#").split(sep)
    header = [h.strip() for h in header]
    rows = [line.split(sep) for line in lines[1:]]
    numeric = [k for k, h in enumerate(header) if all(_is_number(r[k]) for r in rows[:20])]
    join = (sep or " ").join
    prefix = "# " if lines[0].startswith("#") else ""

    def table(head, body) -> bytes:
        return (prefix + join(head) + "\n" + "".join(join(r) + "\n" for r in body)).encode()

    cases = []
    for _ in range(12):
        cases.append(("truncated", "cut inside a value", _cut_inside_a_value(raw, rng)))
    for _ in range(12):
        body = [list(r) for r in rows]
        i, k = int(rng.integers(len(body))), int(rng.choice(numeric))
        token = BAD_TOKENS[int(rng.choice(len(BAD_TOKENS)))]  # by index: numpy's str arrays drop a trailing NUL
        body[i][k] = token if sep is None or sep not in token else "abc"
        cases.append(("bad value", f"{token!r} in row {i + 2}, column {header[k]}", table(header, body)))
    required = _required(name)
    for _ in range(4):
        k = header.index(str(rng.choice(required)))
        cases.append(("column dropped", f"without {header[k]}", table(header[:k] + header[k + 1:],
                                                                         [r[:k] + r[k + 1:] for r in rows])))
    for _ in range(4):
        a, b = rng.choice(len(header), size=2, replace=False)
        head = list(header)
        head[int(b)] = head[int(a)]
        cases.append(("column renamed", f"{header[int(b)]} renamed {header[int(a)]} (a duplicate)", table(head, rows)))
    return cases


def _required(task: str) -> list[str]:
    if task == "sn_lasso":
        from astrobench.tasks.sn_lasso.data import PANTHEON_REQUIRED

        return [c for c in PANTHEON_REQUIRED if c != "CID"]
    from astrobench.tasks.photoz.data import REQUIRED

    return [c for c in REQUIRED if c != "field"]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _fits_cases(clean: Path, rng) -> list[tuple[str, str, bytes]]:
    from astropy.io import fits

    raw = clean.read_bytes()
    cases = [("truncated", f"cut at byte {cut}", raw[:cut])
             for cut in rng.integers(100, len(raw) - 1, size=10)]

    def edited(edit) -> bytes:
        with fits.open(clean) as hdus:
            edit(hdus)
            buffer = io.BytesIO()
            hdus.writeto(buffer)
        return buffer.getvalue()

    for column in rng.choice(["log_M500", "train", "validate", "test"], size=4):
        def drop(h, column=str(column)):
            table = h[2]
            h[2] = fits.BinTableHDU.from_columns([c for c in table.columns if c.name != column])
        cases.append(("column dropped", f"without {column}", edited(drop)))
    for value, what in ((np.nan, "NaN"), (-1, "negative"), (0, "zero")):
        image = int(rng.integers(24))

        def set_image(h, image=image, value=value):
            h[1] = fits.ImageHDU(h[1].data.astype(np.float32), header=h[1].header)
            h[1].data[image] = value
        cases.append(("bad value", f"image {image} all {what}", edited(set_image)))
    return cases


def _cut_file(name: str, fraction: float):
    """An edit that keeps the first ``fraction`` of the file ``name`` in a data folder."""
    def edit(folder: Path) -> None:
        path = folder / name
        path.write_bytes(path.read_bytes()[: int(fraction * path.stat().st_size)])
    return edit


def _folder_cases(task: str, clean: Path, rng) -> list[tuple[str, str, callable]]:
    """(kind, description, edit(folder)) for the folder formats."""
    cases = []
    if task == "camels":
        maps = sorted(p.name for p in clean.glob("Maps_*.npy"))
        params = sorted(p.name for p in clean.glob("params_*.txt"))
        for _ in range(6):
            name, frac = str(rng.choice(maps)), float(rng.uniform(0.05, 0.95))
            cases.append(("truncated", f"{name} cut at {frac:.0%}", _cut_file(name, frac)))
        for _ in range(4):
            name = str(rng.choice(params))
            cases.append(("truncated", f"{name} cut inside a value",
                          lambda f, name=name, seed=int(rng.integers(1 << 30)): (f / name).write_bytes(
                              _cut_inside_a_value((f / name).read_bytes(), np.random.default_rng(seed)))))
        for _ in range(3):
            name, token = str(rng.choice(params)), BAD_TOKENS[int(rng.choice(6))]
            row, column = int(rng.integers(1, 7)), int(rng.integers(6))

            def bad_value(f, name=name, token=token, row=row, column=column):
                lines = (f / name).read_text().splitlines()
                cells = lines[row].split()
                cells[column] = token
                lines[row] = " ".join(cells)
                (f / name).write_text("\n".join(lines) + "\n")
            cases.append(("bad value", f"{token!r} in {name}, row {row}", bad_value))
    else:  # allsky
        frames = sorted(str(p.relative_to(clean)) for p in clean.glob("frames/*.png"))
        for _ in range(6):
            name, frac = str(rng.choice(frames)), float(rng.uniform(0.05, 0.9))
            cases.append(("truncated", f"{name} cut at {frac:.0%}", _cut_file(name, frac)))
        for _ in range(4):
            name = str(rng.choice(frames))
            cases.append(("missing file", f"{name} deleted", lambda f, name=name: (f / name).unlink()))
        for _ in range(4):
            row = int(rng.integers(1, 13))

            def typo(f, row=row, seed=int(rng.integers(1 << 30))):
                lines = (f / "manifest.csv").read_text().splitlines(keepends=True)
                cells = lines[row].split(",")
                k = lines[0].split(",").index("label")
                label = list(cells[k])
                j = int(np.random.default_rng(seed).integers(len(label) - 1))
                label[j], label[j + 1] = label[j + 1], label[j]  # two letters swapped
                cells[k] = "".join(label)
                lines[row] = ",".join(cells)
                (f / "manifest.csv").write_text("".join(lines))
            cases.append(("label typo", f"row {row}: two letters of the label swapped", typo))
    return cases


def _flag_cases(rng) -> list[tuple[str, str, list[str], str]]:
    """(kind, description, extra arguments, the word the message must contain)."""
    from astrobench.registry import get_task, task_names

    cases = [("bad flag", "--seed -5", ["rings", "--seed", "-5"], "--seed"),
             ("bad flag", "--seed 2**33", ["rings", "--seed", str(2**33)], "--seed"),
             ("bad flag", "--name a/b", ["rings", "--name", "a/b"], "--name"),
             ("bad flag", "--name ..", ["rings", "--name", ".."], "--name"),
             ("bad flag", "--devices x", ["rings", "--devices", "x"], "--devices"),
             ("bad flag", "--devices 64 on the CPU", ["rings", "--devices", "64", "--accelerator", "cpu"], "devices"),
             ("bad flag", "--num-nodes 0", ["rings", "--num-nodes", "0"], "num-nodes"),
             ("bad flag", "--strategy banana", ["rings", "--strategy", "banana"], "banana"),
             ("bad flag", "--accelerator quantum", ["rings", "--accelerator", "quantum"], "quantum"),
             ("bad flag", "--accelerator gpu without a GPU", ["rings", "--accelerator", "gpu"], "gpu")]
    for task in task_names():
        options = get_task(task).options("smoke")
        ints = [k for k, v in options.items() if isinstance(v, int) and not isinstance(v, bool)]
        key = str(rng.choice(ints))
        cases.append(("bad option", f"{task}: {key}='many'", [task, "--set", f"{key}='many'"], key))
        key = str(rng.choice([k for k, v in options.items() if not isinstance(v, str)]))  # a str takes "None"
        cases.append(("bad option", f"{task}: {key}=None", [task, "--set", f"{key}=None"], key))
        counts = get_task(task).count_options
        if counts:
            key = str(rng.choice(counts))
            value = [10**11] * len(options[key]) if isinstance(options[key], list) else 10**11
            cases.append(("too big", f"{task}: {key}={value}", [task, "--set", f"{key}={value}"], key))
    return cases


def _run(args: list[str], out: Path) -> tuple[int, str]:
    from astrobench.cli import main

    err, stdout = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
            code = main(["run", *args, "--out", str(out), "--no-progress"])
    except BaseException as exc:  # an exception escaping main is a traceback for the user
        return -1, f"Traceback: {type(exc).__name__}: {exc}"
    return code, err.getvalue().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="broken-inputs-"))
    clean = _clean_files(tmp)
    outcomes = []

    def record(kind, task, what, code, err, out, must_name):
        failures = []
        if code == 0:
            failures.append("silent success")
        elif code != 2:
            failures.append(f"exit {code}")
        if "Traceback" in err:
            failures.append("traceback")
        if err.count("\n"):
            failures.append(f"{err.count(chr(10)) + 1} lines")
        if must_name not in err:
            failures.append("does not name the file or option")
        if out.exists():
            failures.append("run folder left")
        outcomes.append({"task": task, "kind": kind, "case": what, "exit": code, "message": err[:300],
                         "clean": not failures, "failures": failures})

    n = 0
    for task in ("sn_lasso", "photoz"):
        for kind, what, data in _table_cases(task, clean[task], rng, "," if task == "sn_lasso" else None):
            n += 1
            path = tmp / f"case{n}{clean[task].suffix}"
            path.write_bytes(data)
            out = tmp / f"runs{n}"
            record(kind, task, what, *_run([task, "--data", str(path), "--set", "size='smoke'"], out), out, str(path))
    for kind, what, data in _fits_cases(clean["cluster_mass"], rng):
        n += 1
        path = tmp / f"case{n}.fits"
        path.write_bytes(data)
        out = tmp / f"runs{n}"
        record(kind, "cluster_mass", what, *_run(["cluster_mass", "--data", str(path), "--set", "size='smoke'"], out),
               out, str(path))
    for task in ("camels", "allsky"):
        for kind, what, edit in _folder_cases(task, clean[task], rng):
            n += 1
            folder = tmp / f"case{n}"
            shutil.copytree(clean[task], folder)
            edit(folder)
            out = tmp / f"runs{n}"
            record(kind, task, what, *_run([task, "--data", str(folder), "--set", "size='smoke'"], out), out,
                   str(folder))
    for kind, what, extra, word in _flag_cases(rng):
        n += 1
        out = tmp / f"runs{n}"
        record(kind, extra[0], what, *_run([*extra, "--set", "size='smoke'"] if "size" not in " ".join(extra)
                                           else extra, out), out, word)
    shutil.rmtree(tmp, ignore_errors=True)

    kinds = sorted({o["kind"] for o in outcomes})
    summary = {kind: {"cases": sum(o["kind"] == kind for o in outcomes),
                      "clean": sum(o["kind"] == kind and o["clean"] for o in outcomes)} for kind in kinds}
    result = {"seed": args.seed, "cases": len(outcomes), "clean": sum(o["clean"] for o in outcomes),
              "clean_fraction": round(sum(o["clean"] for o in outcomes) / len(outcomes), 4),
              "tracebacks": sum("traceback" in o["failures"] for o in outcomes),
              "silent_successes": sum("silent success" in o["failures"] for o in outcomes),
              "run_folders_left": sum("run folder left" in o["failures"] for o in outcomes),
              "by_kind": summary, "not_clean": [o for o in outcomes if not o["clean"]]}
    path = ROOT / "benchmarks" / "results" / "broken_inputs.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "not_clean"}, indent=1))
    for o in result["not_clean"]:
        print(f"NOT CLEAN {o['task']} {o['kind']} {o['case']}: {o['failures']} | {o['message'][:160]}")


if __name__ == "__main__":
    main()

"""End-to-end CLI tests on tiny configs, through a real subprocess (exit codes, stdout, stderr)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides

KEYS = {"run_id", "params", "params_nonembed", "tokens", "flops", "final_train_loss", "final_val_loss",
        "tokens_per_s", "wall_s", "status"}  # fmt: skip


def cli(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "scalelab", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)  # fmt: skip


def _sets(**extra):
    return [a for kv in tiny_overrides(**extra) for a in ("--set", kv)]


@pytest.mark.slow
def test_train_json_sample_and_runs(tmp_path):
    wd = str(tmp_path / "w")
    r = cli("train", *_sets(), "--workdir", wd, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert KEYS <= set(res) and res["status"] == "completed"
    s = cli("sample", res["run_id"], "--prompt", "def ", "--tokens", "20", "--workdir", wd, "--json")
    assert s.returncode == 0, s.stderr
    assert isinstance(json.loads(s.stdout.splitlines()[-1])["text"], str)
    runs = cli("runs", "--workdir", wd, "--json")
    assert runs.returncode == 0 and json.loads(runs.stdout)[0]["id"] == res["run_id"]
    table = cli("runs", "--workdir", wd)
    assert res["run_id"] in table.stdout


@pytest.mark.slow
def test_train_from_toml_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "from-file"\n[train]\niters = 10\n')
    r = cli("train", str(cfg), *_sets(train__iters="10"), "--workdir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["iters"] == 10


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--set", "train.learnig_rate=1"], "unknown key 'train.learnig_rate'"),
        (["train", "--set", "train.iters=many"], "train.iters"),
        (["train", "--set", "data.source='/no/such/dir'"], "data source not found"),
        (["train", "missing.toml"], "config file not found"),
        (["sample", "nope"], "neither a checkpoint path nor a run"),
        (["runs", "--workdir", "/tmp/definitely-not-a-workdir"], "no run store"),
        (["bench", "train", "--preset", "nope"], "unknown bench preset"),
    ],
)
def test_user_errors_exit_2_without_traceback(tmp_path, args, needle):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_resume_finishes(tmp_path):
    wd = tmp_path / "w"
    args = [sys.executable, "-m", "scalelab", "train", *_sets(train__iters="100000", train__ckpt_every="1000000"),
            "--workdir", str(wd), "--json"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = wd / "scalelab.db"
    deadline = time.time() + 120
    while time.time() < deadline and not list(wd.glob("runs/*/config.json")):
        time.sleep(0.2)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    res = json.loads(stdout.splitlines()[-1])
    assert res["status"] == "interrupted" and res["iters"] > 0 and "--resume" in stderr
    assert db.exists() and list(wd.glob("runs/*/ckpt/step_*"))
    r = cli("train", *_sets(train__iters=str(res["iters"] + 5)), "--workdir", str(wd), "--resume",
            res["run_id"], "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout.splitlines()[-1])
    assert done["status"] == "completed" and done["iters"] == res["iters"] + 5 and done["run_id"] == res["run_id"]


@pytest.mark.slow
def test_bench_train_json(tmp_path, shakespeare):
    r = cli("bench", "train", "--preset", "shakespeare-char", "--recipe", "gpt2", "--data", str(shakespeare),
            "--set", "train.iters=20", "--set", "train.eval_every=10", "--target", "4.0", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    for k in ("tokens_per_s", "final_val_loss", "time_to_target_s", "target_val_loss", "iters", "mfu"):
        assert k in res
    assert res["iters"] == 20 and res["mfu"] is None and res["time_to_target_s"] is not None


# ----------------------------------------------------------------------------- usage errors, names, reports


def console_script() -> list[str]:
    """The installed `scalelab` console script (what users run), else `python -m scalelab`."""
    script = shutil.which("scalelab", path=str(Path(sys.executable).parent)) or shutil.which("scalelab")
    return [script] if script else [sys.executable, "-m", "scalelab"]


def scalelab(*args, cwd=None, timeout=120):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([*console_script(), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=env)  # fmt: skip


@pytest.mark.parametrize(
    "args,needle",
    [
        (["trian"], "No such command 'trian'"),
        (["train", "--nope"], "No such option: --nope"),
        (["sample", "x", "--tokens", "abc"], "--tokens"),
        (["sample", "x", "--tokens", "0"], "--tokens"),
        (["fit", "chinchilla", "runs.csv", "--bootstrap", "-1"], "--bootstrap"),
        (["study", "scaling", "--workers", "0"], "--workers"),
        (["sweep"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2_with_usage_and_no_traceback(tmp_path, args, needle):
    r = scalelab(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "Usage: scalelab" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize("args", [[], ["fit"], ["bench"]])
def test_bare_command_prints_help_and_exits_0(tmp_path, args):
    r = scalelab(*args, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "Usage: scalelab" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr


def test_study_help_lists_the_options():
    r = scalelab("study", "--help")
    assert r.returncode == 0, r.stderr
    for opt in ("--preset", "--set", "--dry-run", "--json", "--workdir", "--executor", "--workers", "--address",
                "--gpus-per-run", "--retry-failed"):  # fmt: skip
        assert opt in r.stdout, opt


def test_unknown_study_is_a_user_error(tmp_path):
    r = scalelab("study", "nosuchstudy", "--dry-run", "--workdir", str(tmp_path))
    assert r.returncode == 2 and "no study 'nosuchstudy'" in r.stderr and "Traceback" not in r.stderr


def _store_with_odd_names(workdir: Path) -> None:
    from scalelab.store import RunStore

    store = RunStore.in_workdir(workdir)
    store.create_run("m[/]x", {"a": 1}, "h1", group="[bold red]g[/]", status="completed")
    store.create_run("[link=file:///etc]y[/link]", {"a": 2}, "h2", group="../../../../tmp/x/pwned",
                     status="completed")  # fmt: skip
    store.close()


def test_markup_laden_names_are_printed_literally(tmp_path):
    _store_with_odd_names(tmp_path)
    r = scalelab("runs", "--workdir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "m[/]x" in r.stdout and "[bold red]g[/]" in r.stdout and "[link=file:///etc]y[/link]" in r.stdout
    missing = scalelab("runs", "--workdir", str(tmp_path / "[bold]w[/]"))
    assert missing.returncode == 2 and "[bold]w[/]" in missing.stderr and "Traceback" not in missing.stderr


def test_path_like_sweep_names_are_refused(tmp_path):
    _store_with_odd_names(tmp_path / "w")
    outside = tmp_path / "x"
    r = scalelab("report", str(tmp_path / "w"), "--sweep", "../../../../" + str(outside).lstrip("/") + "/pwned")
    assert r.returncode == 2 and "looks like a path" in r.stderr and "Traceback" not in r.stderr
    r = scalelab("report", str(tmp_path / "w"))  # every group in the store, one of them path-like
    assert r.returncode == 2 and "looks like a path" in r.stderr
    assert not outside.exists() and not list(tmp_path.rglob("pwned*"))
    spec = tmp_path / "s.toml"
    spec.write_text('name = "../../evil"\n[grid]\n"model.size" = ["L1"]\n')
    r = scalelab("sweep", str(spec), "--dry-run", "--workdir", str(tmp_path / "w"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_report_paths_stay_in_the_work_directory(tmp_path):
    from scalelab.errors import UserError
    from scalelab.report import report_path

    assert report_path(tmp_path, "scaling-quick") == tmp_path / "reports" / "scaling-quick.html"
    assert report_path(tmp_path, "scaling-size=L2-C=1e+13").name == "scaling-size=L2-C=1e+13.html"
    try:  # brackets and spaces: slugified, or refused once scalelab.names is in
        odd = report_path(tmp_path, "m[x] y")
        assert odd.parent == tmp_path / "reports" and not set("[] ") & set(odd.name)
    except UserError:
        pass
    for bad in ("../x", "a/b", "a\\b", "..", ".hidden", "", "a\nb", "/tmp/x"):
        with pytest.raises(UserError):
            report_path(tmp_path, bad)


def test_markdown_twin_escapes_html(tmp_path):
    from scalelab.report import Section, write_report

    evil = "<script>alert(1)</script>"
    path = write_report(tmp_path / "r.html", f"t {evil}", [Section(f"s {evil}", f"text {evil}",
                        tables=[[{"name": f"a|b {evil}", "loss": 1.5}]])], meta=evil)  # fmt: skip
    for text in (path.read_text(), path.with_suffix(".md").read_text()):
        assert "<script>" not in text and "&lt;script&gt;" in text
    md = path.with_suffix(".md").read_text()
    assert "| a\\|b &lt;script&gt;" in md  # a '|' in a cell does not split it


def test_json_output_is_strict_json(capsys):
    from scalelab.cli.common import print_json

    print_json({"x": float("nan"), "y": (1, float("inf")), "z": Path("p")})
    assert json.loads(capsys.readouterr().out) == {"x": None, "y": [1, None], "z": "p"}


# ----------------------------------------------------------------------------- scalelab study NAME (a toy study)

TOY_BASE = {"data": {"source": "stdlib", "max_documents": 60}, "model": {"recipe": "modern", "block_size": 32},
            "train": {"batch_size": 8, "eval_batches": 2, "eval_every": 5, "log_every": 5, "device": "cpu",
                      "threads": 1, "lr": 3e-3}}  # fmt: skip


@pytest.fixture
def toy_study(monkeypatch, tmp_path):
    """A registered two-run study `toy` (sizes L1, L2), with a preset file; returns the preset's path."""
    from types import SimpleNamespace

    from pydantic import Field

    from scalelab.config import _Strict
    from scalelab.studies import STUDIES, runner
    from scalelab.sweep.spec import load_spec
    from scalelab.sweep.spec import plan as plan_sweep

    class ToyConfig(_Strict):
        name: str = "toy"
        sizes: list[str] = Field(default_factory=lambda: ["L1", "L2"])
        iters: int = 6

    def plan(config, workdir):
        raw = {"name": config.name, "base": json.loads(json.dumps(TOY_BASE)),
               "grid": {"model.size": config.sizes, "train.iters": [config.iters]}}  # fmt: skip
        return plan_sweep(load_spec(None, raw=raw), workdir)[0]

    def analyze(store, config):
        return {"losses": {r["name"]: r["final_val_loss"] for r in store.find_runs(group=config.name)}}

    module = SimpleNamespace(Config=ToyConfig, plan=plan, analyze=analyze, figures=lambda res, store: [],
                             summary=lambda res: f"toy: {len(res['losses'])} runs [bold]m[/]x")  # fmt: skip
    monkeypatch.setitem(STUDIES, "toy", "a toy study for the CLI tests")
    monkeypatch.setattr(runner, "study_module", lambda name: module)
    preset = tmp_path / "toy.toml"
    preset.write_text('name = "toy"\n')
    return str(preset)


def test_study_dry_run_table_and_json(toy_study, tmp_path):
    from typer.testing import CliRunner

    from scalelab.cli import app

    args = ["study", "toy", "--preset", toy_study, "--set", "iters=7", "--dry-run", "--workdir", str(tmp_path / "w")]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "toy-size=L1" in table.stdout and "totals: runs 2" in table.stdout
    res = CliRunner().invoke(app, [*args, "--json"])
    plan = json.loads(res.stdout.strip().splitlines()[-1])
    assert plan["dry_run"] and plan["study"] == "toy" and plan["totals"]["new"] == 2
    assert [r["iters"] for r in plan["runs"]] == [7, 7]
    bad = CliRunner().invoke(app, ["study", "toy", "--preset", toy_study, "--set", "sizess=['L1']", "--dry-run"])
    assert bad.exit_code != 0 and "sizess" in str(bad.exception)


@pytest.mark.slow
def test_study_runs_with_json_and_reuses(toy_study, tmp_path):
    from typer.testing import CliRunner

    from scalelab.cli import app

    args = ["study", "toy", "--preset", toy_study, "--workdir", str(tmp_path / "w"), "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    res = json.loads(first.stdout.strip().splitlines()[-1])
    assert res["ran"] == 2 and res["failed"] == 0 and res["report"].endswith("toy.html")
    assert "toy-size=L2" in first.stderr  # progress and per-run lines on stderr, also with --json
    again = CliRunner().invoke(app, args[:-1])  # the text summary, printed literally
    assert again.exit_code == 0, again.output
    assert "toy: 2 runs [bold]m[/]x" in again.stdout and "2 already done, 0 ran" in again.stdout

import subprocess
import sys

from training.cli import build_parser, main

SUBCOMMANDS = ["train", "resume", "export", "eval", "data", "synth", "transcribe", "serve", "bench"]


def test_help_lists_every_subcommand():
    text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert name in text


def test_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "training.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "transcribe" in done.stdout


def test_missing_pieces_give_one_line_and_nonzero(capsys, monkeypatch):
    from training import tasks

    assert main(["train", "no-such-task"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown task 'no-such-task'" in err
    monkeypatch.setitem(tasks.PLANNED, "later-task", "a piece that has not landed")
    assert main(["train", "later-task"]) == 2
    assert "not available yet" in capsys.readouterr().err
    assert main(["eval", "no-such-kind"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown evaluation" in err


def test_bad_bundle_path_is_one_line(tmp_path, capsys):
    assert main(["synth", "hello", "--model", str(tmp_path / "none"), "-o", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a bundle directory" in err


def test_unknown_benchmark(capsys):
    assert main(["bench", "nothing_here"]) == 2
    assert "no benchmark" in capsys.readouterr().err


def test_transcribe_reports_missing_audio_in_one_line(tmp_path, capsys):
    assert main(["transcribe", str(tmp_path / "none.wav"), "--model", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0

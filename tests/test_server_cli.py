"""``vlsearch serve``: refuses unsafe binds before starting; a missing extra names its pip line."""

from __future__ import annotations

import sys

import pytest

from vlsearch.cli import main
from vlsearch.errors import MissingExtraError


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv("VLSEARCH_API_KEY", raising=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_public_bind_without_key_is_refused(host, capsys):
    assert main(["serve", "--host", host, "--port", "1", "--model", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert f"refusing to bind {host} without an API key" in err and "--api-key" in err


def test_loopback_and_key_checks_pass_then_model_errors_surface(capsys, monkeypatch, tmp_path):
    # with a key (flag or environment) the command goes on, to the model load, which fails here
    assert main(["serve", "--host", "0.0.0.0", "--api-key", "short", "--model", str(tmp_path / "none")]) == 2
    assert "an API key must have at least 12 characters" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--api-key", "a-long-enough-key", "--model", str(tmp_path / "none"),
                 "--no-reranker"]) == 1
    assert "no such model directory" in capsys.readouterr().err
    monkeypatch.setenv("VLSEARCH_API_KEY", "first-long-key,second-long-key")
    assert main(["serve", "--host", "0.0.0.0", "--model", str(tmp_path / "none"), "--no-reranker"]) == 1
    assert main(["serve", "--collections-root", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_api_keys_from_flag_and_environment(monkeypatch):
    import argparse

    from vlsearch.cli.serve import api_keys

    monkeypatch.setenv("VLSEARCH_API_KEY", " a , b,,")
    assert api_keys(argparse.Namespace(api_key=["c", "a"])) == ("c", "a", "b")


def test_is_loopback():
    from vlsearch.server import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.org", ""))


def test_missing_server_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "vlsearch.server.app", raising=False)
    import vlsearch.server as server

    with pytest.raises(MissingExtraError, match=r"pip install 'vlsearch\[server\]'"):
        _ = server.create_app

"""Checkpoint files: atomic writes, pickle-free loads, clear errors, RNG state round trips."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from train.checkpoint import (
    BEST, FORMAT, LATEST, VERSION, find_checkpoint, load_checkpoint, rng_state, save_checkpoint,
    set_rng_state,
)
from train.errors import UserError
from train.offpolicy import dqn_from_checkpoint


def _payload(value: float = 1.0) -> dict:
    return {
        "algo": "dqn", "weights": torch.full((3, 4), value), "counters": {"global_step": 7},
        "names": ("a", "b"), "maybe": None,
    }


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "sub" / LATEST  # the folder is created on demand
    save_checkpoint(path, _payload(2.5))
    ckpt, file = load_checkpoint(path)
    assert file == path
    assert ckpt["format"] == FORMAT and ckpt["version"] == VERSION
    assert torch.equal(ckpt["weights"], torch.full((3, 4), 2.5))
    assert ckpt["counters"] == {"global_step": 7}
    assert ckpt["names"] == ("a", "b") and ckpt["maybe"] is None


def test_save_leaves_no_temp_files(tmp_path):
    save_checkpoint(tmp_path / LATEST, _payload(1.0))
    save_checkpoint(tmp_path / LATEST, _payload(2.0))  # overwrite goes through os.replace too
    save_checkpoint(tmp_path / BEST, _payload(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST, LATEST]
    assert torch.equal(load_checkpoint(tmp_path / LATEST)[0]["weights"], torch.full((3, 4), 2.0))


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch, error):
    path = tmp_path / LATEST
    save_checkpoint(path, _payload(1.0))
    before = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # the whole file, into the temp file...
        f.truncate(len(before) // 2)  # ...cut in half, as if the machine died mid-write
        raise error

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(type(error)):
        save_checkpoint(path, _payload(9.0))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [LATEST]


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "algo": "dqn", "x": Exploit()}, path)
    assert not marker.exists()
    with pytest.raises(UserError, match="refusing to load") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_user_error(tiny_run, tmp_path):
    data = (tiny_run / LATEST).read_bytes()
    for name, cut in [("half", data[: len(data) // 2]), ("tail", data[:-100]), ("empty", b"")]:
        path = tmp_path / f"{name}.pt"
        path.write_bytes(cut)
        with pytest.raises(UserError, match="truncated or corrupt") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)


def test_foreign_torch_file_is_not_an_rlplay_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(UserError, match="is not an rlplay checkpoint"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)  # not even a dict
    with pytest.raises(UserError, match="is not an rlplay checkpoint"):
        load_checkpoint(path)


def test_non_torch_file_is_not_reported_as_a_dangerous_pickle(tiny_run):
    with pytest.raises(UserError) as info:
        load_checkpoint(tiny_run / "config.json")
    assert "refusing" not in str(info.value)
    assert "not an rlplay checkpoint" in str(info.value) or "corrupt" in str(info.value)


def test_refusal_names_what_was_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Exploit()}, path)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    assert "posix.system" in str(info.value)
    assert "weights_only` set to `False` will likely succeed" not in str(info.value)


def test_wrong_version(tmp_path):
    path = tmp_path / LATEST
    torch.save({"format": FORMAT, "version": VERSION + 1, "algo": "dqn"}, path)
    with pytest.raises(UserError, match=f"version {VERSION + 1}; this rlplay reads version {VERSION}"):
        load_checkpoint(path)


def test_missing_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_run_folder_without_checkpoints(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match=r"no checkpoint in .*latest\.pt or best\.pt"):
        load_checkpoint(tmp_path)


def test_find_checkpoint_prefers_as_asked(tmp_path):
    save_checkpoint(tmp_path / LATEST, _payload(1.0))
    save_checkpoint(tmp_path / BEST, _payload(2.0))
    assert find_checkpoint(tmp_path, prefer=LATEST) == tmp_path / LATEST
    assert find_checkpoint(tmp_path, prefer=BEST) == tmp_path / BEST
    assert find_checkpoint(tmp_path / LATEST, prefer=BEST) == tmp_path / LATEST  # a file is a file
    assert load_checkpoint(tmp_path, prefer=BEST)[0]["weights"][0, 0] == 2.0
    assert load_checkpoint(tmp_path, prefer=LATEST)[0]["weights"][0, 0] == 1.0
    (tmp_path / BEST).unlink()  # falls back to the other one
    assert find_checkpoint(tmp_path, prefer=BEST) == tmp_path / LATEST
    save_checkpoint(tmp_path / BEST, _payload(2.0))
    (tmp_path / LATEST).unlink()
    assert find_checkpoint(tmp_path, prefer=LATEST) == tmp_path / BEST


def _draw() -> tuple:
    return (
        torch.rand(5), torch.randint(0, 1000, (5,)), np.random.rand(5), np.random.normal(size=3),
        [random.random() for _ in range(5)], random.gauss(0, 1),
    )


def _same(a: tuple, b: tuple) -> bool:
    return (
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and np.array_equal(a[2], b[2])
        and np.array_equal(a[3], b[3]) and a[4] == b[4] and a[5] == b[5]
    )


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's legacy state
    random.gauss(0, 1)  # and in python's
    save_checkpoint(tmp_path / LATEST, {"rng": rng_state()})
    expected = _draw()
    assert not _same(expected, _draw())  # the RNGs do move on
    set_rng_state(load_checkpoint(tmp_path / LATEST)[0]["rng"])  # loaded with weights_only
    assert _same(expected, _draw())


def test_dqn_from_checkpoint_rebuilds_the_policy(tiny_run):
    ckpt, _ = load_checkpoint(tiny_run, prefer=LATEST)
    agent = dqn_from_checkpoint(ckpt)
    for name, tensor in agent.q_net.state_dict().items():
        assert torch.equal(tensor, ckpt["agent"]["q_net"][name])
    assert agent.num_updates == ckpt["agent"]["num_updates"] > 0
    obs = torch.randn(8, 4)
    assert torch.equal(agent.act(obs), agent.q_net(obs).argmax(dim=1))


def test_run_checkpoints_rebuild_without_the_command_line(tiny_run):
    ckpt, _ = load_checkpoint(tiny_run, prefer=BEST)
    assert ckpt["algo"] == "dqn"
    assert ckpt["config"]["dqn"]["hidden"] == (16, 16)
    assert ckpt["net_kwargs"] == {
        "obs_dim": 4, "num_actions": 2, "discrete_obs": False, "hidden": (16, 16), "dueling": False,
    }
    latest, _ = load_checkpoint(tiny_run, prefer=LATEST)
    assert latest["counters"]["global_step"] == 600
    assert [e[0] for e in latest["evals"]] == [300, 600]
    assert latest["buffer"] is None  # save_buffer is off by default


def test_checkpoint_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / LATEST, _payload())
        (tmp_path / "plain").write_bytes(b"")
    finally:
        os.umask(old)
    assert (tmp_path / LATEST).stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777

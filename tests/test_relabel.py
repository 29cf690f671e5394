"""pipelines.relabel: label-file contract, crash safety, sharding, bad videos and the summary."""
import json

import numpy as np
import pytest

from pipelines import relabel
from sfm_tracks.pseudo_labels import LABEL_KEYS
from sfm_tracks.video import write_video
from tests.synthetic import textured_video

CONF = {"num_queries": 48, "geometric_filter": False, "max_frames": 12, "max_side": 96}


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so the per-video error handling cannot swallow it."""


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    for i in range(3):
        write_video(d / f"clip{i}.mp4", textured_video(T=12, H=72, W=128, velocity=(1.0 + 0.3 * i, 0.5), seed=i))
    return d


def manifest(out):
    return relabel.read_manifest(out / relabel.MANIFEST)


def test_label_file_contract(videos, tmp_path):
    s = relabel.run([str(videos)], tmp_path, CONF)
    assert (s["done"], s["skipped"], s["failed"]) == (3, 0, 0)
    with np.load(tmp_path / "clip1.npz") as z:
        T, N = int(z["num_frames"]), z["queries"].shape[0]
        assert T == 12 and 0 < N <= 48
        dims = {"T": T, "N": N}
        for key, (dtype, shape) in LABEL_KEYS.items():
            assert z[key].dtype == np.dtype(dtype), key
            assert z[key].shape == tuple(dims.get(d, d) for d in shape), key
        assert str(z["teacher"]) == "lk"
        assert str(z["video_path"]) == str((videos / "clip1.mp4").resolve())
        np.testing.assert_array_equal(z["original_size"], [72, 128])
        np.testing.assert_array_equal(z["frame_size"], [54, 96])  # --max-side 96
        np.testing.assert_allclose(z["scale"], [0.75, 0.75])
        q, tr, vis = z["queries"], z["tracks"], z["visible"]
        n = np.arange(N)
        np.testing.assert_allclose(tr[q[:, 0].astype(int), n], q[:, 1:], atol=1e-4)  # tracks pass their queries
        assert vis[q[:, 0].astype(int), n].all()
        assert (z["cycle_ok"] <= vis).all() and (z["geo_state"] == 0).all()
        assert (q[:, 0] < 3).all()  # first quarter of 12 frames
    rec = manifest(tmp_path)[str((videos / "clip1.mp4").resolve())]
    assert rec["status"] == "done" and rec["labels"] == "clip1.npz" and rec["stats"]["visible"] > N


def _lines(out):
    return [json.loads(l) for l in (out / relabel.MANIFEST).read_text().splitlines() if l.strip().startswith("{") and l.strip().endswith("}")]


def test_resume_after_kills_loses_and_duplicates_nothing(videos, tmp_path, monkeypatch):
    real_append, real_write = relabel.append_manifest, relabel.write_npz
    calls = {"n": 0}

    def kill_after_npz(path, record):  # npz of the 2nd video on disk, its manifest line not yet
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed()
        real_append(path, record)

    monkeypatch.setattr(relabel, "append_manifest", kill_after_npz)
    with pytest.raises(Killed):
        relabel.run([str(videos)], tmp_path, CONF)
    assert len(manifest(tmp_path)) == 1 and (tmp_path / "clip1.npz").is_file()

    def kill_mid_npz(path, arrays):  # a torn temp file must not count as labels
        path.with_name(path.name + ".tmp").write_bytes(b"PK\x03\x04 partial")
        raise Killed()

    monkeypatch.setattr(relabel, "append_manifest", real_append)
    monkeypatch.setattr(relabel, "write_npz", kill_mid_npz)
    with pytest.raises(Killed):
        relabel.run([str(videos)], tmp_path, CONF)
    monkeypatch.setattr(relabel, "write_npz", real_write)
    # a kill while writing the manifest line leaves a torn last line
    with open(tmp_path / relabel.MANIFEST, "a") as f:
        f.write('{"video": "/x/clip9.mp4", "status": "do')
    s = relabel.run([str(videos)], tmp_path, CONF)
    assert s["already_in_manifest"] == 1 and s["done"] == 2
    recs = _lines(tmp_path)
    assert sorted(r["video"] for r in recs) == sorted(str((videos / f"clip{i}.mp4").resolve()) for i in range(3))
    for i in range(3):
        with np.load(tmp_path / f"clip{i}.npz") as z:
            assert z["tracks"].shape[0] == 12
    # a rerun does nothing
    s = relabel.run([str(videos)], tmp_path, CONF)
    assert (s["already_in_manifest"], s["done"]) == (3, 0) and len(_lines(tmp_path)) == 3


def test_bad_video_is_logged_and_the_run_goes_on(videos, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    write_video(d / "flat.mp4", np.full((12, 64, 64, 3), 128, np.uint8))
    lst = tmp_path / "list.txt"
    lst.write_text(f"in/broken.mp4\nin/flat.mp4\n{videos / 'clip0.mp4'}\nin/missing.mp4\n")
    out = tmp_path / "out"
    s = relabel.run([str(lst)], out, CONF)
    assert (s["done"], s["skipped"], s["failed"]) == (1, 1, 2)
    m = manifest(out)
    assert m[str(d / "broken.mp4")]["status"] == "failed" and "VideoError" in m[str(d / "broken.mp4")]["reason"]
    assert m[str(d / "flat.mp4")]["status"] == "skipped" and "SIFT" in m[str(d / "flat.mp4")]["reason"]
    assert m[str(d / "missing.mp4")]["status"] == "failed"
    assert not (out / "broken.npz").exists() and (out / "clip0.npz").is_file()
    assert relabel.run([str(lst)], out, CONF)["already_in_manifest"] == 4
    text = relabel.format_summary(s)
    assert "1 done, 1 skipped" in text and "2 failed" in text


def test_shards_partition_the_inputs(tmp_path, monkeypatch):
    for name in ["b.mp4", "a.mp4", "c.mov", "d.mp4", "e.mkv", "notes.md"]:
        (tmp_path / name).write_bytes(b"x")
    paths = relabel.collect_inputs([str(tmp_path), str(tmp_path / "a.mp4")])
    assert [p.name for p in paths] == ["a.mp4", "b.mp4", "c.mov", "d.mp4", "e.mkv"]
    for n in (1, 2, 3, 7):
        parts = [relabel.shard_inputs(paths, *relabel.parse_shard(f"{i}/{n}")) for i in range(n)]
        flat = [p for part in parts for p in part]
        assert sorted(flat) == sorted(paths) and len(flat) == len(set(flat))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert relabel.parse_shard(None) == (1, 2)
    assert relabel.shard_inputs(list(reversed(paths)), 1, 2) == [paths[1], paths[3]]
    with pytest.raises(ValueError):
        relabel.parse_shard("2/2")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.mp4").write_bytes(b"x")
    with pytest.raises(ValueError, match="same file stem"):
        relabel.collect_inputs([str(tmp_path), str(tmp_path / "sub")])


def test_cli_with_geometric_filter(videos, tmp_path):
    status = relabel.main([str(videos / "clip2.mp4"), "-o", str(tmp_path), "--num-queries", "40", "--max-frames", "12",
                           "--max-side", "128", "--cycle-threshold", "2"])
    assert status == 0
    rec = manifest(tmp_path)[str((videos / "clip2.mp4").resolve())]
    # a translating plane has no parallax: the 3D filter cannot verify anything and says so
    assert rec["note"].startswith("reconstruction failed")
    assert rec["stats"]["unverifiable"] == rec["stats"]["after_cycle"] and rec["stats"]["rejected"] == 0


def test_a_teacher_per_epoch_labels_each_distinct_teacher_once(videos, tmp_path):
    from cotracker3.data.pseudo_labels import PseudoLabelDataset, epoch_files
    from sfm_tracks.pseudo_labels import epoch_teachers
    from sfm_tracks.tracking.providers import LucasKanadeProvider
    teachers = [("lk", LucasKanadeProvider()), ("lk-small-window", LucasKanadeProvider(win_size=9))]
    s = relabel.run([str(videos)], tmp_path, dict(CONF, epochs=4), teachers=teachers)
    assert s["done"] == 3
    recs = manifest(tmp_path)
    for i in range(3):
        drawn = epoch_teachers(teachers, f"clip{i}", 0, 4)
        rec = recs[str((videos / f"clip{i}.mp4").resolve())]
        names = [f"clip{i}.npz" if t == drawn[0] else f"clip{i}.{t}.npz" for t in drawn]
        assert rec["epochs"] == names and rec["teacher"] == drawn[0] and rec["labels"] == names[0]
        for t, n in zip(drawn, names):
            with np.load(tmp_path / n) as z:
                assert str(z["teacher"]) == t
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == sorted({n for r in recs.values() for n in r["epochs"]})
    assert any(len(set(r["epochs"])) > 1 for r in recs.values())
    videos_epochs = epoch_files(tmp_path)
    ds = PseudoLabelDataset(str(tmp_path), seq_len=12, num_tracks=8, crop_size=(32, 32), samples_per_video=8)
    assert len(ds) == 3 * 8 and [fs[0].name for fs in videos_epochs] == ["clip0.npz", "clip1.npz", "clip2.npz"]
    k = next(v for v, fs in enumerate(videos_epochs) if len(set(fs)) > 1)
    epoch = next(e for e, f in enumerate(videos_epochs[k]) if f != videos_epochs[k][0])
    a, b = ds[k], ds[k + 3 * epoch]  # the same video in pass 0 and in a pass labelled by the other teacher
    with np.load(videos_epochs[k][0]) as z0, np.load(videos_epochs[k][epoch]) as z1:
        assert not np.allclose(np.nan_to_num(z0["tracks"]), np.nan_to_num(z1["tracks"]))
    assert a["trajectory"].shape == b["trajectory"].shape == (12, 8, 2)


def test_teacher_with_its_own_weights():
    from cotracker3.checkpoint import EMBEDDED_DIR, EMBEDDED_FILES
    weights = str(EMBEDDED_DIR / EMBEDDED_FILES["offline"])
    built = relabel.build_teachers(["lk", f"cotracker3-online={weights}"], checkpoint="default")
    assert [n for n, _ in built] == ["lk", "cotracker3-online"] and built[1][1].choice.checkpoint == weights

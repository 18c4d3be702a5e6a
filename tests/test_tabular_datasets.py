"""UCI loaders of MN Table 2: each reader on a tiny archive in the real on-disk format, the cache,
checksums, a download from a local server, and the clear error without network."""
import dataclasses
import functools
import http.server
import io
import socket
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nslviz.datasets import tabular
from nslviz.datasets.tabular import TABULAR_DATASETS, available_tabular_datasets, load_tabular, sha256_of

RNG = np.random.default_rng(0)


def _csv(rows: np.ndarray, header: list[str] | None = None) -> bytes:
    lines = [",".join(header)] if header else []
    lines += [",".join(f"{v:.6g}" for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)


def _tar_gz(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))


def _write_archive(name: str, folder) -> tuple[np.ndarray, np.ndarray]:
    """A tiny copy of the real archive of `name` (same file names, layout and columns) -> raw x, y."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = TABULAR_DATASETS[name]
    n = 12
    if name == "music":                           # year first, then 90 features, no header
        x, y = RNG.normal(size=(n, 90)), RNG.integers(1922, 2011, n).astype(float)
        _zip(folder / spec.archive, {"YearPredictionMSD.txt": _csv(np.column_stack([y, x]))})
    elif name == "toms":                          # tar.gz: regression/{Twitter,TomsHardware}/*.data, target last
        x, y = RNG.integers(0, 500, size=(n, 96)).astype(float), RNG.random(n) * 100
        _tar_gz(folder / spec.archive, {"regression/TomsHardware/TomsHardware.data": _csv(np.column_stack([x, y])),
                                        "regression/Twitter/Twitter.data": _csv(RNG.random((3, 78)))})
    elif name == "cte":                           # header patientId, value0..value383, reference
        x, y = RNG.random((n, 384)), RNG.random(n) * 100
        patient = np.arange(n)[:, None] % 3
        header = ["patientId"] + [f"value{i}" for i in range(384)] + ["reference"]
        _zip(folder / spec.archive, {"slice_localization_data.csv": _csv(np.column_stack([patient, x, y]), header)})
    elif name == "super":                         # train.csv with 81 named features + critical_temp; unique_m.csv
        x, y = RNG.random((n, 81)) * 10, RNG.random(n) * 90
        header = ["number_of_elements"] + [f"feature_{i}" for i in range(80)] + ["critical_temp"]
        _zip(folder / spec.archive, {"train.csv": _csv(np.column_stack([x, y]), header),
                                     "unique_m.csv": _csv(RNG.random((n, 3)), ["H", "He", "critical_temp"])})
    else:                                         # gom: folder in the zip, two files, 116 features + lat, long
        x, y = RNG.normal(size=(n, 116)), np.column_stack([RNG.uniform(-40, 60, n), RNG.uniform(-120, 140, n)])
        _zip(folder / spec.archive, {
            "Geographical Original of Music/default_features_1059_tracks.txt": _csv(RNG.random((n, 70))),
            "Geographical Original of Music/default_plus_chromatic_features_1059_tracks.txt":
                _csv(np.column_stack([x, y])),
            "__MACOSX/Geographical Original of Music/._default_plus_chromatic_features_1059_tracks.txt": b"\x00"})
    return x, y


def _standardised(a):
    return (a - a.mean(0)) / a.std(0)


@pytest.mark.parametrize("name", sorted(TABULAR_DATASETS))
def test_reader_on_the_real_archive_layout(name, tmp_path):
    x, y = _write_archive(name, tmp_path / name)
    data = load_tabular(name, tmp_path, download=False)
    spec = TABULAR_DATASETS[name]
    assert data.x.shape == (12, spec.features) and data.y.shape == y.shape
    np.testing.assert_allclose(data.y, _standardised(y), atol=1e-4)      # the right column(s), normalised
    np.testing.assert_allclose(data.x, _standardised(x), atol=1e-4)
    np.testing.assert_allclose(data.x.mean(0), 0, atol=1e-12)
    assert len(data.feature_names) == spec.features
    raw = load_tabular(name, tmp_path, download=False, normalize=False)
    np.testing.assert_allclose(raw.y, y, rtol=1e-5)
    # parsed once, then read from the cache (even without the archive)
    assert (tmp_path / name / f"{name}.npz").is_file()
    (tmp_path / name / spec.archive).unlink()
    np.testing.assert_array_equal(load_tabular(name, tmp_path, download=False).x, data.x)


def test_a_constant_column_is_standardised_to_zeros_not_nan(tmp_path):
    """A feature with one value in every row (standard deviation 0) becomes a column of zeros, not
    0/0 = NaN, nor ±1 where the mean's rounding leaves a standard deviation of 1e-17 (0.1); the other
    columns are standardised as usual."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "toms"
    folder.mkdir()
    x, y = rng.integers(0, 500, size=(12, 96)).astype(float), rng.random(12) * 100
    x[:, 5], x[:, 7] = 42.0, 0.1
    _tar_gz(folder / TABULAR_DATASETS["toms"].archive,
            {"regression/TomsHardware/TomsHardware.data": _csv(np.column_stack([x, y]))})
    data = load_tabular("toms", tmp_path, download=False)
    assert np.isfinite(data.x).all(), f"non-finite standardised columns: {np.where(~np.isfinite(data.x).all(0))[0]}"
    for column in (5, 7):
        assert np.array_equal(data.x[:, column], np.zeros(12)), f"constant column {column} became {data.x[:, column]}"
    np.testing.assert_allclose(np.delete(data.x, [5, 7], axis=1), _standardised(np.delete(x, [5, 7], axis=1)), atol=1e-4)
    np.testing.assert_allclose(data.y, _standardised(y), atol=1e-4)


def test_names_of_super_and_gom_targets(tmp_path):
    _write_archive("super", tmp_path / "super")
    _write_archive("gom", tmp_path / "gom")
    assert load_tabular("super", tmp_path, download=False).feature_names[0] == "number_of_elements"
    assert load_tabular("gom", tmp_path, download=False).target_names == ["latitude", "longitude"]


def test_diabetes_is_embedded_and_subsets_are_seeded():
    data = load_tabular("diabetes")
    assert (data.n, data.d) == (442, 10) and data.y.shape == (442,)
    np.testing.assert_allclose(data.y.std(), 1.0) and np.testing.assert_allclose(data.x.mean(0), 0, atol=1e-12)
    a, b = load_tabular("diabetes", max_rows=50, seed=3), load_tabular("diabetes", max_rows=50, seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, load_tabular("diabetes", max_rows=50, seed=4).x)     # another seed: other rows
    assert a.n == 50 and "diabetes" in available_tabular_datasets()
    with pytest.raises(ValueError, match="unknown dataset 'boston'; expected one of 'diabetes', 'music'"):
        load_tabular("boston")


def test_missing_file_without_download_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_tabular("cte", tmp_path, download=False)
    message = str(error.value)
    assert "'cte'" in message and "slice_localization_data.zip" in message and str(tmp_path) in message
    assert TABULAR_DATASETS["cte"].url in message and "load_tabular('diabetes')" in message


def test_no_network_fails_fast_with_a_clear_error(tmp_path, monkeypatch):
    """A server that accepts the connection and never answers: the download gives up after the
    timeout and the error names the dataset, the URL and where to put the file by hand."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/00315/gom.zip"
    monkeypatch.setitem(TABULAR_DATASETS, "gom", dataclasses.replace(TABULAR_DATASETS["gom"], url=url))
    start = time.perf_counter()
    try:
        with pytest.raises(ConnectionError) as error:            # the CLI's exit code 1, as a failed image download
            load_tabular("gom", tmp_path, timeout=0.5)
    finally:
        server.close()
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert "dataset 'gom'" in message and url in message and "timed out" in message
    assert str(tmp_path / "gom" / "Geographical Original of Music.zip") in message
    assert not list((tmp_path / "gom").glob("*.part"))                      # no half-written file left
    # a refused connection (nothing listening) fails at once, too
    monkeypatch.setitem(TABULAR_DATASETS, "gom", dataclasses.replace(TABULAR_DATASETS["gom"],
                                                                     url="http://127.0.0.1:9/gom.zip"))
    with pytest.raises(ConnectionError, match="could not be downloaded from http://127.0.0.1:9/gom.zip"):
        load_tabular("gom", tmp_path, timeout=0.5)


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on localhost serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_and_caches(tmp_path, local_server, monkeypatch):
    served, base = local_server
    _write_archive("toms", served)
    archive = served / TABULAR_DATASETS["toms"].archive
    spec = dataclasses.replace(TABULAR_DATASETS["toms"], url=f"{base}/{archive.name}")
    monkeypatch.setitem(TABULAR_DATASETS, "toms", spec)
    with pytest.warns(UserWarning, match=f"no verified SHA-256 .* has SHA-256 {sha256_of(archive)}"):
        data = load_tabular("toms", tmp_path / "data", timeout=5)
    assert data.x.shape == (12, 96)
    assert sha256_of(tmp_path / "data" / "toms" / archive.name) == sha256_of(archive)
    # a pinned checksum that matches: silent; one that does not: the file is rejected and deleted
    monkeypatch.setitem(TABULAR_DATASETS, "toms", dataclasses.replace(spec, sha256=sha256_of(archive)))
    assert load_tabular("toms", tmp_path / "again", timeout=5).x.shape == (12, 96)
    monkeypatch.setitem(TABULAR_DATASETS, "toms", dataclasses.replace(spec, sha256="0" * 64))
    with pytest.raises(ValueError, match="has SHA-256 .* expected 0000"):
        load_tabular("toms", tmp_path / "bad", timeout=5)
    assert not (tmp_path / "bad" / "toms" / archive.name).exists()
    # a server that does not have the file: the error says how to get it, and no empty folders are left
    monkeypatch.setitem(TABULAR_DATASETS, "toms", dataclasses.replace(spec, url=f"{base}/missing.tar.gz"))
    with pytest.raises(ConnectionError, match="could not be downloaded"):
        load_tabular("toms", tmp_path / "new" / "root", timeout=5)
    assert not (tmp_path / "new").exists()


def test_a_damaged_archive_is_reported(tmp_path):
    folder = tmp_path / "super"
    folder.mkdir()
    (folder / TABULAR_DATASETS["super"].archive).write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="neither a zip nor a tar archive"):
        load_tabular("super", tmp_path, download=False)
    _zip(folder / TABULAR_DATASETS["super"].archive, {"unique_m.csv": b"a,b\n1,2\n"})
    with pytest.raises(ValueError, match="does not contain 'train.csv'"):
        load_tabular("super", tmp_path, download=False)
    header = ["number_of_elements"] + [f"feature_{i}" for i in range(79)] + ["critical_temp"]
    _zip(folder / TABULAR_DATASETS["super"].archive, {"train.csv": _csv(RNG.random((4, 81)), header)})
    with pytest.raises(ValueError, match=r"(?s)train.csv in .* has 80 feature columns, expected 81 \(another "
                                         r"table or version\)"):
        load_tabular("super", tmp_path, download=False)
    assert tabular.UCI.startswith("https://archive.ics.uci.edu/")


def test_data_readme_lists_every_uci_table_with_its_file_and_url():
    readme = Path(__file__).resolve().parents[1].joinpath("data", "README.md").read_text()
    for name, spec in TABULAR_DATASETS.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"`{spec.archive}`" in row and f"`{spec.member}`" in row and spec.url in row
        assert f"{spec.rows:,} × {spec.features}" in row

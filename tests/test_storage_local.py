"""The file:// store: the shared contract, root confinement, atomic writes and URL parsing."""

from __future__ import annotations

import os
import pathlib

import pytest

from streamhouse_beam.errors import ObjectNotFoundError, StoragePermissionError, UnsafeKeyError
from streamhouse_beam.storage import open_store
from streamhouse_beam.storage.local import LocalFileStore
from tests.storage_contract import StoreContract


def _files_under(root: pathlib.Path) -> list[str]:
    names = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            names.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(names)


class TestLocalFileStoreContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: pathlib.Path) -> LocalFileStore:
        store = open_store((tmp_path / "root").as_uri())
        assert isinstance(store, LocalFileStore)
        return store

    @pytest.fixture
    def raw_names(self, store: LocalFileStore):  # type: ignore[no-untyped-def]
        return lambda bucket=None: _files_under(store.root)

    @pytest.fixture
    def other_bucket(self) -> None:
        return None

    @pytest.fixture
    def secret(self) -> None:
        return None


@pytest.fixture
def store(tmp_path: pathlib.Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "root")


def test_dotdot_keys_stay_inside_the_root(store: LocalFileStore, tmp_path: pathlib.Path) -> None:
    store.put("../../outside.seg", b"x")
    assert not (tmp_path / "outside.seg").exists()
    assert (store.root / "%2E%2E" / "%2E%2E" / "outside.seg").read_bytes() == b"x"


def test_absolute_keys_resolve_under_the_root_like_object_store(
    store: LocalFileStore, tmp_path: pathlib.Path
) -> None:
    target = tmp_path / "abs.seg"
    target.write_bytes(b"outside")
    with pytest.raises(ObjectNotFoundError):
        store.get(str(target))
    store.put(str(target), b"inside")
    assert target.read_bytes() == b"outside"
    assert store.path_for(str(target)).is_relative_to(store.root)


def test_part_that_would_escape_is_refused_even_if_encoding_let_it_through(
    store: LocalFileStore,
) -> None:
    for parts in (["a", ".."], ["..", "x"], ["/etc", "passwd"], ["a/../../b"]):
        with pytest.raises(UnsafeKeyError):
            store._resolve_parts("k", parts)


def test_symlink_pointing_outside_the_root_is_refused(
    store: LocalFileStore, tmp_path: pathlib.Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.seg").write_bytes(b"secret")
    store.root.mkdir()
    os.symlink(outside, store.root / "data")
    os.symlink(outside / "secret.seg", store.root / "direct.seg")
    with pytest.raises(UnsafeKeyError) as info:
        store.get("data/secret.seg")
    assert info.value.key == "data/secret.seg"
    with pytest.raises(UnsafeKeyError):
        store.get("direct.seg")
    with pytest.raises(UnsafeKeyError):
        store.put("data/new.seg", b"x")
    assert not (outside / "new.seg").exists()
    with pytest.raises(UnsafeKeyError):
        store.delete("direct.seg")
    assert (outside / "secret.seg").exists()


def test_symlink_inside_the_root_is_followed(store: LocalFileStore) -> None:
    store.put("real/x.seg", b"x")
    os.symlink(store.root / "real", store.root / "alias")
    assert store.get("alias/x.seg") == b"x"


def test_root_that_is_itself_a_symlink_works(tmp_path: pathlib.Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    store = LocalFileStore(tmp_path / "link")
    store.put("a/b", b"v")
    assert store.get("a/b") == b"v"
    assert (tmp_path / "real" / "a" / "b").read_bytes() == b"v"


def test_put_leaves_no_temporary_files(store: LocalFileStore) -> None:
    for i in range(3):
        store.put("data/t/0/x.seg", bytes([i]) * 100)
    assert _files_under(store.root) == ["data/t/0/x.seg"]


def test_directory_in_place_of_an_object_is_not_found(store: LocalFileStore) -> None:
    store.put("data/t/0/x.seg", b"x")
    with pytest.raises(ObjectNotFoundError):
        store.get("data/t/0")
    with pytest.raises(ObjectNotFoundError):
        store.size("data/t")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file_raises_permission_error(store: LocalFileStore) -> None:
    store.put("locked.seg", b"x")
    store.path_for("locked.seg").chmod(0)
    with pytest.raises(StoragePermissionError) as info:
        store.get("locked.seg")
    assert info.value.key == "locked.seg"


def test_file_url_forms(tmp_path: pathlib.Path) -> None:
    assert open_store(f"file://{tmp_path}").url == tmp_path.as_uri()
    assert open_store(f"file://localhost{tmp_path}").url == tmp_path.as_uri()
    spaced = tmp_path / "with space"
    assert open_store(spaced.as_uri()).root == spaced


@pytest.mark.parametrize("url", ["file://host/dir", "file:relative", "file://"])
def test_bad_file_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="file"):
        open_store(url)


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported scheme"):
        open_store("ftp://x/y")


def test_credentials_in_a_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError) as info:
        open_store("s3://AKIA:supersecret@bucket")
    assert "supersecret" not in str(info.value)


def test_readers_never_see_a_partly_written_object(store: LocalFileStore) -> None:
    import threading

    versions = [bytes([i]) * 200_000 for i in range(1, 6)]
    store.put("data/t/0/x.seg", versions[0])
    stop = threading.Event()
    seen: set[bytes] = set()

    def read() -> None:
        while not stop.is_set():
            data = store.get("data/t/0/x.seg")
            seen.add(data[:1] + data[-1:] + len(data).to_bytes(4, "big"))

    reader = threading.Thread(target=read)
    reader.start()
    for version in versions * 4:
        store.put("data/t/0/x.seg", version)
    stop.set()
    reader.join()
    assert seen <= {v[:1] + v[-1:] + len(v).to_bytes(4, "big") for v in versions}

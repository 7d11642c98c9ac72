"""The stream plumbing without a server: the shared snapshot cache and the release of stream slots."""
import threading

from webapi.stream import PositionStream, StreamBody, VersionedCache, event_frame
from web_test_support import build_system


def test_cache_rebuilds_only_on_a_new_data_version_or_a_settings_change(tmp_path):
    system = build_system(tmp_path)
    try:
        builds = []
        cache = VersionedCache(system.positions, system.settings, lambda v: builds.append(v) or {"v": v})
        first = cache.get()
        assert cache.get()[1] is first[1]  # the same payload object is shared
        assert builds == [system.positions.data_version]
        system.executor.buy_stock("600036.SH", amount=20000)  # a fill: new data_version
        assert cache.get()[0] == system.positions.data_version and len(builds) == 2
        system.settings.update({"STOP_LOSS_RATIO": -0.08})  # trigger prices move
        cache.get()
        assert len(builds) == 3
        cache.get()
        assert len(builds) == 3
    finally:
        system.close()


def test_requests_arriving_while_a_snapshot_is_built_wait_for_it_instead_of_building_it_again(tmp_path):
    system = build_system(tmp_path)
    try:
        builds, encodings = [], []
        started, release = threading.Event(), threading.Event()

        def slow_build(version):
            builds.append(version)
            started.set()
            release.wait(5)
            return {"v": version}

        def encode(payload):
            encodings.append(payload)
            return repr(payload).encode()

        cache = VersionedCache(system.positions, system.settings, slow_build)
        answers = []
        readers = [threading.Thread(target=lambda: answers.append(cache.encoded(encode))) for _ in range(8)]
        readers[0].start()
        assert started.wait(5)
        for reader in readers[1:]:
            reader.start()
        release.set()
        for reader in readers:
            reader.join(5)
        version = system.positions.data_version
        assert builds == [version] and len(encodings) == 1  # one build, one encoding, for 8 requests
        assert answers == [(f'"{version}-0"', repr({"v": version}).encode())] * 8
    finally:
        system.close()


def test_slot_is_released_once_even_when_the_client_left_before_the_first_frame():
    released = []
    frames = iter([b"x"])
    body = StreamBody(frames, lambda: released.append(1))
    body.close()
    body.close()
    assert released == [1]


def test_stream_ends_on_stop_and_sends_snapshot_first(tmp_path):
    system = build_system(tmp_path)
    try:
        stop = threading.Event()
        stream = PositionStream(system.positions, lambda: (system.positions.data_version, {"n": 1}),
                                lambda: {"beat": True}, lambda: 60.0, stop, check_seconds=0.05)
        frames = stream.frames()
        assert next(frames) == b"retry: 2000\n\n"
        assert next(frames) == event_frame("positions", {"n": 1}, event_id=system.positions.data_version)
        stop.set()
        assert list(frames) == []
    finally:
        system.close()


def test_event_frame_encodes_chinese_and_nan():
    assert event_frame("positions", {"名称": "招商银行", "x": float("nan")}, event_id=7) == (
        'id: 7\nevent: positions\ndata: {"名称":"招商银行","x":null}\n\n'.encode("utf-8"))

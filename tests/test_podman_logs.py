"""What a failed pod's report quotes of its log (mlctl.podman.log_excerpt)."""

from mlctl.podman import log_excerpt

REASON = (
    "2026-12-01 22:52:07,101 - runtime.seldon:load:135 - ERROR:  not serving /mnt/models: "
    "the weights' sha256 is ab…, but 0f… was expected (MODEL_SHA256)"
)
SHUTDOWN = [f'  File "/usr/lib/python3.11/multiprocessing/process.py", line {n}, in join' for n in range(30)]


def test_the_reason_logged_before_a_long_shutdown_is_quoted_with_the_tail():
    text = "\n".join(
        ["[INFO] Booting worker with pid: 18", REASON, *SHUTDOWN, "AssertionError: can only join a child process"]
    )
    out = log_excerpt(text, tail=20).splitlines()
    assert out[0] == REASON
    assert out[-1] == "AssertionError: can only join a child process"
    assert len(out) == 1 + 1 + 20  # the reason, the marker, the tail
    assert "Booting worker" not in "\n".join(out)


def test_a_log_without_errors_before_its_tail_is_just_its_tail():
    lines = [f"line {n}" for n in range(50)]
    assert log_excerpt("\n".join(lines), tail=20).splitlines() == lines[-20:]
    with_error_in_tail = [*lines[:40], REASON, *lines[40:]]
    assert log_excerpt("\n".join(with_error_in_tail), tail=20).splitlines() == with_error_in_tail[-20:]


def test_a_traceback_s_exception_line_counts_as_an_error_line():
    text = "\n".join(["runtime.artifact.DigestMismatch: /mnt/models: refusing to serve other weights", *SHUTDOWN])
    assert log_excerpt(text, tail=5).splitlines()[0].startswith("runtime.artifact.DigestMismatch:")


def test_an_error_repeated_by_each_worker_is_quoted_once():
    text = "\n".join([REASON, REASON, *SHUTDOWN])
    assert log_excerpt(text, tail=5).splitlines()[:2] == [
        REASON,
        "[... 27 earlier line(s), first error lines above ...]",
    ]

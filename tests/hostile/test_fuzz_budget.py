"""The inbound fuzz target (fuzz/fuzz_inbound.py): its seeds, in-process, and a short
coverage-guided run with atheris as a subprocess.

The budget is fixed (`RUNS` executions, libFuzzer seed `SEED`) so that CI is repeatable; fuzz
for longer by hand:

    .venv/bin/python fuzz/fuzz_inbound.py /tmp/fuzz-work fuzz/corpus -dict=fuzz/uftp.dict \\
        -max_total_time=600
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from adapter.uftp.messages import MESSAGE_TYPES

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ / "corpus"
RUNS = 20_000
SEED = 1
#: Seeds that are hostile on purpose and so stop before `codec.decode` succeeds.
HOSTILE_SEEDS = frozenset({"inner-doctype", "inner-utf16", "envelope-not-base64"})


def load_fuzz_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_inbound", FUZZ / "fuzz_inbound.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_corpus_covers_every_message_type() -> None:
    names = {path.name for path in CORPUS.iterdir()}
    for xml_name in MESSAGE_TYPES:
        assert f"inner-{xml_name}-3.1.0" in names
        assert f"envelope-{xml_name}-3.1.0" in names


def test_every_valid_seed_reaches_the_answer_in_process() -> None:
    """Without atheris: each seed through the target; the valid ones get through every stage
    (so mutations of them start deep in the pipeline), and none crashes."""
    fuzz = load_fuzz_module()
    stages: Counter[str] = Counter()
    target = fuzz.make_target(fuzz._load_pipeline(), stages)
    seeds = sorted(CORPUS.iterdir())
    for seed in seeds:
        target(seed.read_bytes())
    valid = [s for s in seeds if s.name not in HOSTILE_SEEDS]
    requests = [s for s in valid if "Response-" not in s.name]
    assert stages["decoded"] == len(valid)
    assert stages["answered"] == len(requests)


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (it is in the test extra for Linux x86_64 only)",
)
def test_fuzz_target_survives_its_budget(tmp_path: Path) -> None:
    """`RUNS` coverage-guided executions -> exit status 0 (libFuzzer exits non-zero and writes
    a crash-* file on the first exception that is not a UftpError)."""
    work = tmp_path / "work"
    work.mkdir()
    command = [
        sys.executable,
        str(FUZZ / "fuzz_inbound.py"),
        str(work),  # new inputs go here; the committed seeds are only read
        str(CORPUS),
        f"-runs={RUNS}",
        f"-seed={SEED}",
        f"-dict={FUZZ / 'uftp.dict'}",
        f"-artifact_prefix={tmp_path}/",
        "-max_total_time=240",
        "-timeout=10",
        "-rss_limit_mb=2048",
    ]
    started = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    artifacts = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("crash-"))
    assert result.returncode == 0, f"fuzzing found a crash {artifacts}:\n{output[-6000:]}"
    done = re.search(r"Done (\d+) runs in (\d+) second", output)
    assert done is not None, output[-3000:]
    executions = int(done.group(1))
    coverage = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", output)
    edges, features, units = coverage[-1] if coverage else ("?", "?", "?")
    print(
        f"fuzz_inbound: {executions} executions in {seconds:.1f} s"
        f" ({executions / seconds:.0f}/s), coverage {edges} edges / {features} features,"
        f" corpus {units} units"
    )
    assert executions == RUNS

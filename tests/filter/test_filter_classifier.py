"""The fastText quality classifier: trained here from text the test builds, then used as a filter step."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.errors import ConfigError
from curate.filter.classifier import ClassifierFilter, TrainingError, score_texts, train_classifier
from curate.parse.html import extract_html
from curate.schema import records_table
from curate.stage import Task
from curate.steps import make_stage
from tests.conftest import REPO

BOILERPLATE_PARTS = [
    ["We use cookies", "This site uses cookies", "Cookies help us"],
    ["to improve your experience", "to analyse traffic", "for personalised ads"],
    ["Accept all", "Manage preferences", "Reject non-essential", "Cookie settings"],
    ["Share on Facebook", "Share on Twitter", "Print this page", "Email a friend", "Back to top"],
    ["Sign up for our newsletter", "Subscribe now", "Follow us", "Download the app"],
    ["© 2024 All rights reserved", "Privacy policy", "Terms of use", "Contact us", "Sitemap"],
    ["Page last reviewed", "Last updated", "Next review due"],
    ["Home", "News", "About us", "Careers", "Menu", "Search", "Log in", "Accessibility"],
]


def _guideline_paragraphs() -> list[str]:
    """Paragraphs of the demo's English guideline pages: the kind of text to keep."""
    paragraphs = []
    for folder in ("demo-guidelines", "demo-wiki"):
        for path in sorted((REPO / "pipelines" / "demo" / "html" / folder).glob("*.html")):
            if path.stem in {"stub", "download", "bluthochdruck"}:
                continue
            text = extract_html(path.read_bytes()).text
            paragraphs += [p for p in re.split(r"\n\s*\n", text) if len(p) > 80]
    return paragraphs


def _boilerplate(n: int, seed: int) -> list[str]:
    """Lines of web boilerplate, as the clean step and the heuristics reject them."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        parts = rng.sample(BOILERPLATE_PARTS, k=rng.randint(2, 4))
        lines.append(" | ".join(rng.choice(p) for p in parts))
    return lines


@pytest.fixture(scope="module")
def data() -> dict[str, list[str]]:
    good = _guideline_paragraphs()
    random.Random(1).shuffle(good)
    cut = len(good) * 3 // 4
    return {
        "train_pos": good[:cut],
        "test_pos": good[cut:],
        "train_neg": _boilerplate(len(good[:cut]), seed=2),
        "test_neg": _boilerplate(40, seed=3),
    }


@pytest.fixture(scope="module")
def model(data, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "quality.bin"
    counts = train_classifier(data["train_pos"], data["train_neg"], path)
    assert counts["positive"] >= 30 and counts["negative"] == counts["positive"]
    return str(path)


def test_trained_model_separates_held_out_text(data, model):
    stage = ClassifierFilter(name="classify", model=model)
    pos = score_texts(stage.model, stage.model_sha256, data["test_pos"])
    neg = score_texts(stage.model, stage.model_sha256, data["test_neg"])
    assert len(data["test_pos"]) >= 10
    correct = sum(s >= 0.5 for s in pos) + sum(s < 0.5 for s in neg)
    assert correct / (len(pos) + len(neg)) >= 0.9
    assert min(pos) > max(neg) or sum(pos) / len(pos) - sum(neg) / len(neg) > 0.5


def test_classify_step_drops_below_threshold_with_score(data, model):
    texts = [data["test_pos"][0], data["test_neg"][0], "", "!!! ..."]
    table = records_table([{"id": f"d:{i}", "text": t, "source": "s"} for i, t in enumerate(texts)])
    stage = make_stage("classify", "classify", {"model": model, "threshold": 0.5}, {})
    kept, rejected = stage.apply(table, Task("t", ()))
    assert kept.column("id").to_pylist() == ["d:0"]
    assert kept.column("quality_score")[0].as_py() >= 0.5
    rows = rejected.select(["id", "drop_reason", "drop_detail"]).to_pylist()
    assert [(r["id"], r["drop_reason"]) for r in rows] == [
        ("d:1", "classifier"),
        ("d:2", "empty"),
        ("d:3", "empty"),
    ]
    assert rows[0]["drop_detail"].startswith("quality score 0.")


def test_same_data_gives_the_same_model(data, model, tmp_path):
    again = tmp_path / "again.bin"
    train_classifier(data["train_pos"], data["train_neg"], again)
    assert again.read_bytes() == Path(model).read_bytes()


def test_cli_trains_from_stage_directories(data, tmp_path):
    for side, texts in (("pos", data["train_pos"]), ("neg", data["train_neg"])):
        (tmp_path / side).mkdir()
        rows = [{"id": f"{side}:{i}", "text": t, "source": "s"} for i, t in enumerate(texts)]
        pq.write_table(records_table(rows), tmp_path / side / "part-0.parquet")
    out = tmp_path / "model.bin"
    result = CliRunner().invoke(
        app, ["quality", "train", str(tmp_path / "pos"), str(tmp_path / "neg"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"{len(data['train_pos'])} positive" in result.output
    empty = CliRunner().invoke(
        app, ["quality", "train", str(tmp_path / "pos"), str(tmp_path / "none"), "--out", str(out)]
    )
    assert empty.exit_code == 2


def test_training_failures_explain_themselves(tmp_path):
    with pytest.raises(TrainingError, match="both sides"):
        train_classifier(["good text"], [""], tmp_path / "m.bin")
    with pytest.raises(TrainingError, match="diverged.*lower the learning rate"):
        train_classifier(["metformin dosing text"] * 5, ["accept cookies"] * 5, tmp_path / "m.bin", lr=1e9)
    with pytest.raises(ConfigError, match="quality model not found"):
        make_stage("classify", "classify", {"model": str(tmp_path / "missing.bin")}, {})
